"""The experiment's report: the five answers first, then what was compared, what it scored, how
sure we can be, what it cost and the exact commands. Built from whatever steps are done, so a
grid still running already has a (partial, labelled) report; every evaluated model's
per-task verdicts are exported beside it (samples/<model>/, re-scorable elsewhere)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from study.grid_v2.arms import FULL_ARMS, Grid
from study.grid_v2.config import ExperimentConfig
from study.engine.settings import ExperimentError, split_list
from study.grid_v2.cost import estimate, expected_budget
from study.grid_v2.headline import Scored, first_lines
from study.grid_v2.plan import build_plan
from study.engine.results import (heldout_curve, heldout_fidelity, load_metrics, load_passes, load_summary, recorded_run_settings, run_summary)
from common.machine import describe as describe_machine
from study.engine.runner import read_record, step_state
from study.engine.stats import compare_pooled
from study.grid_v2.tables import markdown_report

SCORED_SPLITS = {"test": ("humaneval", "mbpp"), "train": ("mbpp",)}


def build_experiment_report(config: ExperimentConfig, out_dir: Path) -> dict:
    """Write report.md, report.json, the plots and samples/ to out_dir; return the JSON."""
    from study.grid_v2.plots import plot_pass_at_1, plot_recovery, plot_speed, plot_training

    grid, out_dir = Grid(config), Path(out_dir)
    steps = build_plan(config)
    states = {s.name: step_state(config.root, s) for s in steps}
    done_evals = [s for s in steps if s.kind in ("eval", "select") and states[s.name] == "done"]
    models = scored_models(done_evals)
    attach_speed(models, steps)
    full_arms = [a for a in FULL_ARMS if a in {s.meta.get("model") for s in steps}]
    small_arms = ["small", *(f"small-{loss}" for loss in split_list(config.small_losses))]
    budget_known = grid.budget_file.exists()
    budget = grid.budget() if budget_known else expected_budget(config)
    report = {
        "config": config.to_dict(),
        "progress": {"done": sum(v == "done" for v in states.values()), "steps": len(steps),
                     "pending": [n for n, v in states.items() if v != "done"]},
        "answers": first_lines(models, full_arms, small_arms),
        "plan": {"budget": budget.to_dict(), "budget_measured": budget_known,
                 "estimate": estimate(config, steps, budget)},
        "choices": {"template": _read(grid.template_file), "lr": _read(grid.lr_file),
                    "mbpp_base": _read(grid.mbpp_base_file),
                    "mbpp_answers": _read(grid.mbpp_data.with_name("mbpp-train-verified.meta.json"))},
        "table": accuracy_rows(models),
        "significance": significance(models, full_arms, small_arms),
        "speed": speed_rows(models, small_arms),
        "recovery": recovery(grid, steps, states, models),
        "fidelity": [{"run": s.meta["model"], **f} for s in steps if s.kind == "train" and states[s.name] == "done"
                     and (f := heldout_fidelity(s.output))],
        "run_settings": run_settings(steps),
        "costs": _costs(config.root, steps),
        "commands": [{"step": s.name, "command": (read_record(config.root, s.name) or {}).get("command")}
                     for s in steps if states[s.name] == "done" and s.command is not None],
        "software": _software(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    report["samples"] = export_samples(done_evals, out_dir / "samples")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots = {}
    if report["table"] and (chart := plot_pass_at_1(report["table"], out_dir / "pass_at_1.png")):
        plots["pass@1"] = chart
    if report["speed"]:
        plots["speed"] = plot_speed(report["speed"], out_dir / "size_speed.png")
    if any(r["curve"] for r in report["recovery"]):
        plots["recovery"] = plot_recovery(report["recovery"], out_dir / "recovery.png")
    runs = {s.meta["model"]: load_metrics(s.output) for s in steps if s.kind == "train" and states[s.name] == "done"}
    if runs:
        plots.update(plot_training(runs, out_dir))
    (out_dir / "report.md").write_text(markdown_report(report, {k: Path(v).name for k, v in plots.items()}))
    return report


def scored_models(evals) -> dict[str, Scored]:
    """Every model with a test or train evaluation: its per-task outcomes ("mbpp_train" for the
    train split), its parameters and generated tokens/s (test split) and pass@1."""
    models: dict[str, Scored] = {}
    for step in evals:
        split = step.meta.get("split")
        if split not in SCORED_SPLITS:
            continue
        scored = models.setdefault(step.meta["model"], Scored(passes={}))
        summary = load_summary(step.output)
        for bench in SCORED_SPLITS[split]:
            key = bench if split == "test" else f"{bench}_{split}"
            scored.passes[key] = load_passes(step.output, bench)
            scored.pass_at_1[key] = summary["benchmarks"][bench]["pass@1"]
        if split == "test":
            scored.parameters = summary.get("parameters")
            scored.tokens_per_s = (summary.get("generation") or {}).get("tokens_per_s")
    return models


def attach_speed(models: dict[str, Scored], steps) -> dict[str, dict]:
    """Each measured model's fixed-length decode tokens/s (speed/<model>/speed.json, where
    whole) onto its Scored; a trained smaller student takes the pruned student's figure (same
    architecture and dtype: one measurement serves all small runs). Returns the records read."""
    from stages.evaluate.speed import read_speed

    measured = {s.meta["model"]: read_speed(s.output) for s in steps if s.kind == "speed" and s.verify()}
    for model, scored in models.items():
        source = "small" if model.startswith("small-") else model
        if source in measured:
            record = measured[source]
            scored.fixed_tokens_per_s = record["tokens_per_s"]
            scored.fixed_length = f"{record['prompts']} prompts x {record['new_tokens']} tokens"
            scored.speed_from = source
            scored.speed_machine = describe_machine(record["machine"]) if record.get("machine") else None
            if scored.parameters is None:
                scored.parameters = record.get("parameters")
    return measured


def accuracy_rows(models: dict[str, Scored]) -> list[dict]:
    from study.grid_v2.headline import accuracy_loss

    rows = []
    for model, scored in models.items():
        tasks = [ok for passes in scored.passes.values() for ok in passes.values()]
        losses = {}
        if "teacher" in models and model != "teacher":
            teacher = models["teacher"]
            for bench in ("humaneval", "mbpp"):
                t, m = teacher.pass_at_1.get(bench), scored.pass_at_1.get(bench)
                losses[bench] = (t - m) / t if t and m is not None else None
            losses["mean"] = accuracy_loss(models, model) if all(v is not None for v in losses.values()) else None
        rows.append({"name": model, "role": "teacher" if model == "teacher" else "student" if model in ("student", "small")
                     else "distilled", "parameters": scored.parameters, "tokens_per_s": scored.tokens_per_s,
                     "pass@1": {**scored.pass_at_1, "mean": _mean(scored.pass_at_1.get(b) for b in ("humaneval", "mbpp")),
                                "pooled": sum(tasks) / len(tasks) if tasks else None, "tasks": len(tasks)},
                     "accuracy_loss": {"humaneval": losses.get("humaneval"), "mbpp": losses.get("mbpp"),
                                       "mean": losses.get("mean")}})
    return rows


def comparison_pairs(full_arms: list[str], small_arms: list[str]) -> list[tuple[str, str]]:
    """Each distilled student against the one it started from; AKD against the other losses of
    its size; the on-policy, mixed and MBPP-train arms against AKD off-policy; the teacher."""
    pairs = [(arm, "student") for arm in full_arms]
    pairs += [("akd", loss) for loss in full_arms if loss in ("ce", "fkl", "rkl")]
    pairs += [(arm, "akd") for arm in ("akd-onpolicy", "akd-mixed", "akd-mbpp") if arm in full_arms]
    pairs += [("akd-mbpp", "akd-onpolicy")] if "akd-mbpp" in full_arms else []
    trained = [a for a in small_arms if a != "small"]
    pairs += [(arm, "small") for arm in trained]
    pairs += [("small-akd", a) for a in trained if a != "small-akd" and "small-akd" in trained]
    return pairs + [("teacher", "student"), ("small", "student")]


def significance(models: dict[str, Scored], full_arms: list[str], small_arms: list[str]) -> list[dict]:
    rows = []
    for a, b in comparison_pairs(full_arms, small_arms):
        if a not in models or b not in models:
            continue
        try:
            result = compare_pooled(models[a].passes, models[b].passes, names=(a, b))
        except ValueError as exc:  # e.g. the two were scored on different task subsets
            rows.append({"a": a, "b": b, "error": str(exc)})
            continue
        rows.append({"a": a, "b": b, "tests": {**result["per_benchmark"], "pooled": result["pooled"]},
                     "benchmarks": result["benchmarks"]})
    return rows


def speed_rows(models: dict[str, Scored], small_arms: list[str]) -> list[dict]:
    """Teacher, student, the smaller student before training and its best trained arm: the
    fixed-length decode tokens/s where `akd speed` has run, the evaluation's beside it."""
    trained = [a for a in small_arms if a != "small" and a in models and "humaneval" in models[a].passes]
    best_small = max(trained, key=lambda a: _test_rate(models[a])) if trained else None
    rows = []
    for model in ("teacher", "student", "small", best_small):
        if model and model in models and "humaneval" in models[model].passes:
            scored = models[model]
            fixed = scored.fixed_tokens_per_s
            rows.append({"model": model, "parameters": scored.parameters, "pass@1": _test_rate(scored),
                         # the figure compared: fixed-length where measured, else the evaluation's
                         "tokens_per_s": fixed if fixed else scored.tokens_per_s,
                         "speed_basis": "fixed-length" if fixed else "evaluation",
                         "fixed_tokens_per_s": fixed, "fixed_length": scored.fixed_length,
                         "speed_from": scored.speed_from, "speed_machine": scored.speed_machine,
                         "eval_tokens_per_s": scored.tokens_per_s})
    return rows


def recovery(grid: Grid, steps, states, models: dict[str, Scored]) -> list[dict]:
    """Per smaller-student arm: held-out FKL against training tokens seen, and pass@1 (on the
    midpoint's benchmarks) before training, at the midpoint and at the end."""
    rows = []
    by_name = {s.name: s for s in steps}
    for step in steps:
        if step.kind != "train" or step.meta.get("size") != "small" or states[step.name] != "done":
            continue
        model, curve = step.meta["model"], heldout_curve(step.output)
        points = []
        mid = by_name.get(f"eval-{model}-mid")
        benchmarks = mid.meta["benchmarks"] if mid else ["humaneval", "mbpp"]
        if "small" in models:
            points.append({"step": 0, "tokens_seen": 0, "pass@1": _rate_on(models["small"], benchmarks)})
        if mid is not None and states[mid.name] == "done":
            mid_step = grid.budget().small_midpoint
            seen = max([p["tokens_seen"] for p in curve if p["step"] <= mid_step], default=None)
            points.append({"step": mid_step, "tokens_seen": seen,
                           "pass@1": _rate_on(Scored(passes={b: load_passes(mid.output, b) for b in benchmarks}),
                                              benchmarks)})
        if model in models and all(b in models[model].passes for b in benchmarks):
            points.append({"step": curve[-1]["step"] if curve else None,
                           "tokens_seen": curve[-1]["tokens_seen"] if curve else None,
                           "pass@1": _rate_on(models[model], benchmarks)})
        rows.append({"run": model, "curve": curve, "pass@1": points, "benchmarks": benchmarks})
    return rows


def export_samples(evals, out_dir: Path) -> dict[str, list[str]]:
    """`akd eval-export` of every done evaluation: samples/<model>/<benchmark>[_split].jsonl.gz.
    A smaller student's midpoint is its own model (samples/<model>-mid/)."""
    from stages.evaluate.export import export_samples as export

    written: dict[str, list[str]] = {}
    for step in evals:
        folder = step.meta["model"] + ("-mid" if step.meta.get("split") == "mid" else "")
        index = export(step.output, out_dir / folder)
        written[folder] = sorted(index["files"])
    return written


# the settings a run records, and the flag of the step's command that asks for each
ASKED_BY = {"loss": ("train", "--loss"), "lr": ("train", "--lr"), "max_steps": ("train", "--max-steps"),
            "max_batch_tokens": ("train", "--max-batch-tokens"), "seed": ("train", "--seed"),
            "k": ("cache", "--k"), "teacher_template": ("cache", "--teacher-template"),
            "student_template": ("cache", "--student-template")}


def run_settings(steps) -> list[dict]:
    """Per training run, the settings it recorded (not those the grid meant to give it), and
    `differs`: each one that is not what its command (or its first cache's command) asked for."""
    caches = {str(s.output): s for s in steps if s.kind == "cache"}
    rows = []
    for step in steps:
        recorded = recorded_run_settings(step.output) if step.kind == "train" else None
        if recorded is None:
            continue
        train = _command(step)
        cache = caches.get(_flag_value(train, "--cache") or "")
        commands = {"train": train, "cache": _command(cache)}
        differs = {}
        for key, (kind, flag) in ASKED_BY.items():
            asked = _flag_value(commands[kind], flag)
            if asked is not None and not _same(recorded[key], asked):
                differs[key] = asked
        rows.append({"run": step.meta["model"], **recorded, "differs": differs})
    return rows


def _command(step) -> list[str]:
    try:
        return step.command() if step is not None and step.command is not None else []
    except ExperimentError:  # needs a choice or the budget, not made yet
        return []


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in a command (the first one, as the cache the run is named after;
    the last one for any other flag, as on the command line)."""
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]
    return (values[0] if flag == "--cache" else values[-1]) if values else None


def _same(recorded, asked: str) -> bool:
    if recorded is None or isinstance(recorded, str):
        return recorded == asked
    try:
        return recorded == type(recorded)(asked)
    except ValueError:
        return False


def _costs(root: Path, steps) -> list[dict]:
    rows = []
    for step in steps:
        record = read_record(root, step.name)
        if not record or record.get("status") != "done":
            continue
        row = {"step": step.name, "kind": step.kind, "wall_s": record.get("wall_s"),
               "peak_rss_gib": record.get("peak_rss_gib"), "attempts": _attempts(root, step.name),
               "machine": describe_machine(record["machine"]) if record.get("machine") else None}
        if step.kind == "train" and (summary := run_summary(step.output)):
            row.update(train_time_s=round(summary["train_time_s"], 1),
                       trainer_peak_gib=round(summary["peak_memory_gib"], 2),
                       steps=summary["steps"], loader_wait_share=summary["loader_wait_share"])
        if step.kind == "cache" and (manifest := step.output / "manifest.json").exists():
            totals = json.loads(manifest.read_text()).get("totals", {})
            row.update(rows=totals.get("rows"), response_tokens=totals.get("response_tokens"))
        rows.append(row)
    return rows


def _attempts(root: Path, name: str) -> int:
    """How many times the step's command was started: the runner heads each start in its log."""
    log = root / "logs" / f"{name}.log"
    if not log.exists():
        return 1
    with open(log, "rb") as f:
        return max(1, sum(line.startswith(b"==== ") for line in f))


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _mean(values) -> float | None:
    values = list(values)
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def _test_rate(scored: Scored) -> float:
    return _rate_on(scored, ["humaneval", "mbpp"])


def _rate_on(scored: Scored, benchmarks) -> float | None:
    tasks = [ok for b in benchmarks if b in scored.passes for ok in scored.passes[b].values()]
    return sum(tasks) / len(tasks) if tasks else None


def _software() -> dict:
    from common.machine import software_versions

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {**software_versions(), "git_commit": commit}
