"""The experiment's report: what was compared, what it scored, how sure we can be, what it
cost, and the exact commands that made it. Built from whatever steps are done, so a grid
still running already has a (partial, labelled) report."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from study.config import ExperimentConfig
from study.plan import CHOICE_FILE, build_plan
from study.plots import plot_pass_at_1, plot_training
from study.config import ExperimentError
from study.results import (heldout_fidelity, load_metrics, load_passes, load_summary,
                           recorded_run_settings, run_summary)
from study.runner import read_record, step_state
from study.stats import compare as paired
from study.tables import markdown_report

BENCHMARKS = ("humaneval", "mbpp")


def build_experiment_report(config: ExperimentConfig, out_dir: Path) -> dict:
    """Write report.md, report.json and the plots to out_dir; return the JSON."""
    from study.accuracy_report import compare as accuracy_table

    root, out_dir = config.root, Path(out_dir)
    steps = build_plan(config)
    states = {s.name: step_state(root, s) for s in steps}
    evals = {s.name: s for s in steps if s.kind == "eval" and states[s.name] == "done"}
    summaries = {name: {**load_summary(s.output), "name": _label(s)} for name, s in evals.items()}

    table = []
    if "eval-teacher" in summaries:
        table = accuracy_table([summary for name, summary in summaries.items()
                                if name != "eval-teacher-enhanced"])
        for row in table:  # the cache's folder name (enhanced, plain) reads better than its path
            row["cache"] = Path(row["cache"]).name if row["cache"] else None
        plan_order = {_label(s): i for i, s in enumerate(steps)}  # groups each student size's runs
        table.sort(key=lambda row: (row["role"] != "teacher", plan_order.get(row["name"], len(plan_order))))
    report = {
        "config": config.to_dict(),
        "run_settings": run_settings(steps),
        "progress": {"done": sum(v == "done" for v in states.values()), "steps": len(steps),
                     "pending": [n for n, v in states.items() if v != "done"]},
        "selection": _selection(root),
        "teacher_prompts": _teacher_prompts(evals),
        "table": table,
        "significance": _significance(evals),
        "fidelity": _fidelity(steps, states),
        "costs": _costs(root, steps),
        "commands": [{"step": s.name, "command": (read_record(root, s.name) or {}).get("command")}
                     for s in steps if states[s.name] == "done" and s.command is not None],
        "software": _software(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plots = {}
    if table:
        plots["pass@1"] = plot_pass_at_1(table, out_dir / "pass_at_1.png")
    runs = {s.name.removeprefix("train-"): load_metrics(s.output) for s in steps
            if s.kind == "train" and states[s.name] == "done"}
    if runs:
        plots.update(plot_training(runs, out_dir))
    (out_dir / "report.md").write_text(markdown_report(report, {k: Path(v).name for k, v in plots.items()}))
    return report


# the settings a run records, and the flag of the step's command that asks for each
ASKED_BY = {"loss": ("train", "--loss"), "lr": ("train", "--lr"), "max_steps": ("train", "--max-steps"),
            "max_batch_tokens": ("train", "--max-batch-tokens"), "seed": ("train", "--seed"),
            "k": ("cache", "--k"), "teacher_template": ("cache", "--teacher-template"),
            "student_template": ("cache", "--student-template")}


def run_settings(steps) -> list[dict]:
    """Per training run, the settings it recorded (not those the grid meant to give it), and
    `differs`: each one that is not what its command (or its cache's command) asked for."""
    by_name = {s.name: s for s in steps}
    rows = []
    for step in steps:
        recorded = recorded_run_settings(step.output) if step.kind == "train" else None
        if recorded is None:
            continue
        commands = {"train": _command(step), "cache": _command(by_name.get(f"cache-{step.meta['cache']}"))}
        differs = {}
        for key, (kind, flag) in ASKED_BY.items():
            asked = _flag_value(commands[kind], flag)
            if asked is not None and not _same(recorded[key], asked):
                differs[key] = asked
        rows.append({"run": step.name.removeprefix("train-"), **recorded, "differs": differs})
    return rows


def _command(step) -> list[str]:
    try:
        return step.command() if step is not None and step.command is not None else []
    except ExperimentError:  # asks for the template choice, not made yet
        return []


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in a command (the last one wins, as on the command line)."""
    values = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]
    return values[-1] if values else None


def _same(recorded, asked: str) -> bool:
    if recorded is None or isinstance(recorded, str):
        return recorded == asked
    try:
        return recorded == type(recorded)(asked)
    except ValueError:
        return False


def _label(step) -> str:
    return step.name.removeprefix("eval-")


def _selection(root: Path) -> dict | None:
    path = root / "selection" / CHOICE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _teacher_prompts(evals: dict) -> dict | None:
    """Does the chosen enhanced prompt raise the teacher's own pass@1 on the test sets?"""
    if not {"eval-teacher", "eval-teacher-enhanced"} <= set(evals):
        return None
    plain, enhanced = evals["eval-teacher"].output, evals["eval-teacher-enhanced"].output
    return {b: {"plain": load_summary(plain)["benchmarks"][b]["pass@1"],
                "enhanced": load_summary(enhanced)["benchmarks"][b]["pass@1"],
                "enhanced_vs_plain": paired(load_passes(enhanced, b), load_passes(plain, b))}
            for b in _benchmarks(evals["eval-teacher"])}


def _significance(evals: dict) -> list[dict]:
    """Paired tests on the same tasks: each distilled student against its original, and AKD
    against every other loss of the same student and cache; per benchmark and pooled."""
    pairs = []
    distilled = {n: s for n, s in evals.items() if s.meta.get("role") == "distilled"}
    originals = {s.meta.get("model"): s for s in evals.values()
                 if s.meta.get("role") == "student"}
    for name, step in distilled.items():
        base = originals.get(step.meta["model"])
        if base is not None:
            pairs.append((step, base))
        if step.meta["loss"] == "akd":
            pairs += [(step, other) for other in distilled.values()
                      if other.meta["loss"] != "akd" and other.meta["model"] == step.meta["model"]
                      and other.meta["cache"] == step.meta["cache"]]
    # the prompt-enhancement effect: same student and loss, enhanced against plain cache
    pairs += [(a, b) for a in distilled.values() for b in distilled.values()
              if a.meta["cache"] == "enhanced" and b.meta["cache"] == "plain"
              and (a.meta["model"], a.meta["loss"]) == (b.meta["model"], b.meta["loss"])]
    rows = []
    for a, b in pairs:
        benchmarks = [x for x in _benchmarks(a) if x in _benchmarks(b)]
        passes_a = {x: load_passes(a.output, x) for x in benchmarks}
        passes_b = {x: load_passes(b.output, x) for x in benchmarks}
        tests = {x: paired(passes_a[x], passes_b[x]) for x in benchmarks}
        if len(benchmarks) > 1:
            tests["pooled"] = paired(_pool(passes_a), _pool(passes_b))
        rows.append({"a": _label(a), "b": _label(b), "tests": tests})
    return rows


def _pool(passes: dict[str, dict[str, bool]]) -> dict[str, bool]:
    return {task: ok for per_task in passes.values() for task, ok in per_task.items()}


def _benchmarks(step) -> list[str]:
    return [b for b in step.meta.get("benchmarks", BENCHMARKS)]


def _fidelity(steps, states) -> list[dict]:
    rows = []
    for step in steps:
        if step.kind == "train" and states[step.name] == "done":
            fidelity = heldout_fidelity(step.output)
            if fidelity:
                rows.append({"run": step.name.removeprefix("train-"), **fidelity})
    return rows


def _costs(root: Path, steps) -> list[dict]:
    rows = []
    for step in steps:
        record = read_record(root, step.name)
        if not record or record.get("status") != "done":
            continue
        row = {"step": step.name, "kind": step.kind, "wall_s": record.get("wall_s"),
               "peak_rss_gib": record.get("peak_rss_gib"), "attempts": _attempts(root, step.name)}
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
    """How many times the step's command was started: the runner heads each start in its log.
    A resumed step's record holds only the last attempt's wall time."""
    log = root / "logs" / f"{name}.log"
    if not log.exists():
        return 1
    with open(log, "rb") as f:
        return max(1, sum(line.startswith(b"==== ") for line in f))


def _software() -> dict:
    from cache_schema.manifest import software_versions

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {**software_versions(), "git_commit": commit}
