"""Reads what the grid's steps left on disk: evaluation summaries, per-task outcomes,
training metrics. Everything the report shows comes through here."""
from __future__ import annotations

from pathlib import Path

from stages.distill.run_folder import CONFIG_FILE as RUN_CONFIG_FILE
from stages.distill.run_folder import PROBE_PREFIX, read_heldout_sequences, read_metrics, read_run_record
from stages.distill.run_folder import read_summary as read_run_summary
from stages.evaluate.eval_folder import SUMMARY_FILE as EVAL_SUMMARY_FILE
from stages.evaluate.eval_folder import read_results, results_path
from stages.evaluate.eval_folder import read_summary as read_eval_summary
from study.engine.settings import ExperimentError


def load_summary(eval_dir: Path) -> dict:
    summary = read_eval_summary(eval_dir)
    if summary is None:
        raise ExperimentError(f"{Path(eval_dir) / EVAL_SUMMARY_FILE} is missing: that evaluation has not finished")
    return summary


def load_passes(eval_dir: Path, benchmark: str) -> dict[str, bool]:
    """task id -> whether its first (greedy) answer passed, for paired comparisons."""
    rows = read_results(eval_dir, benchmark)
    if rows is None:
        raise ExperimentError(f"{results_path(eval_dir, benchmark)} is missing: that evaluation has not finished")
    return {row["task_id"]: row["statuses"][0] == "passed" for row in rows}


def load_pass_rates(eval_dir: Path, benchmark: str) -> dict[str, float]:
    """task id -> the share of its sampled answers that passed (c/n, the unbiased pass@1
    estimate; 0 or 1 for a greedy evaluation), for compare_rates."""
    rows = read_results(eval_dir, benchmark)
    if rows is None:
        raise ExperimentError(f"{results_path(eval_dir, benchmark)} is missing: that evaluation has not finished")
    return {row["task_id"]: row["statuses"].count("passed") / len(row["statuses"]) for row in rows}


def load_verdicts(eval_dir: Path, benchmark: str) -> dict[str, list[bool]]:
    """task id -> whether each of its answers passed, in the order they were sampled (answer i
    of every task drawn with seed + i), for stats.samples_per_task."""
    rows = read_results(eval_dir, benchmark)
    if rows is None:
        raise ExperimentError(f"{results_path(eval_dir, benchmark)} is missing: that evaluation has not finished")
    return {row["task_id"]: [status == "passed" for status in row["statuses"]] for row in rows}


def load_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl records, or none where the run has not started."""
    return read_metrics(run_dir)


def heldout_fidelity(run_dir: Path) -> dict | None:
    """The held-out token metrics before training (the original student) and after."""
    evals = [r for r in load_metrics(run_dir) if r.get("split") == "eval"]
    if not evals:
        return None
    keys = ("eval_fkl", "eval_rkl", "eval_top1_agreement", "eval_nll")
    first, last = evals[0], evals[-1]
    return {"tokens": last.get("eval_tokens"), "first_step": first["step"], "last_step": last["step"],
            "before": {k.removeprefix("eval_"): first.get(k) for k in keys},
            "after": {k.removeprefix("eval_"): last.get(k) for k in keys}}


def heldout_sequences(run_dir: Path) -> dict[str, dict]:
    """Each held-out sequence's figures at the run's last evaluation ("<cache>/<example id>" ->
    tokens, fkl, rkl, top1_agreement, ce), where the run wrote them (--heldout-per-sequence);
    a probe's sequences (--probe-cache) are left out: probe_sequences reads them."""
    return {key: row for key, row in read_heldout_sequences(run_dir).items()
            if not row["cache"].startswith(PROBE_PREFIX)}


def probe_sequences(run_dir: Path, probe: str, step: int | None = None) -> dict[str, dict]:
    """example id -> figures of each sequence of the probe labelled `probe` (its cache folder's
    name) at `step` (default: the run's last evaluation)."""
    label = PROBE_PREFIX + probe
    return {row["example_id"]: row for row in read_heldout_sequences(run_dir, step).values() if row["cache"] == label}


def probe_curve(run_dir: Path, probe: str) -> list[dict]:
    """(step, tokens seen, NLL of the probe's tokens) at every evaluation of a run."""
    key = f"eval_nll/{PROBE_PREFIX}{probe}"
    return [{"step": p["step"], "tokens_seen": p["tokens_seen"], "nll": p["record"][key]}
            for p in _eval_points(run_dir) if p["record"].get(key) is not None]


def final_heldout_fkl(run_dir: Path) -> float | None:
    """The run's last held-out FKL (the whole held-out slice, pooled over its caches)."""
    evals = [r for r in load_metrics(run_dir) if r.get("split") == "eval" and r.get("eval_fkl") is not None]
    return evals[-1]["eval_fkl"] if evals else None


def heldout_curve(run_dir: Path) -> list[dict]:
    """(step, tokens seen, held-out FKL) at every held-out evaluation of a run."""
    return [{"step": p["step"], "tokens_seen": p["tokens_seen"], "fkl": p["record"]["eval_fkl"]}
            for p in _eval_points(run_dir) if p["record"].get("eval_fkl") is not None]


def _eval_points(run_dir: Path) -> list[dict]:
    """Every evaluation record of a run with the tokens seen by then: the training response
    tokens of every step up to it."""
    per_step = {}
    records = load_metrics(run_dir)
    for record in records:
        if record.get("split") == "train":
            per_step[record["step"]] = record.get("tokens") or 0
    cumulative, total = {}, 0
    for step in sorted(per_step):
        total += per_step[step]
        cumulative[step] = total
    return [{"step": r["step"], "tokens_seen": max([cumulative[s] for s in cumulative if s <= r["step"]], default=0),
             "record": r} for r in records if r.get("split") == "eval"]


def recorded_run_settings(run_dir: Path) -> dict | None:
    """The settings a training run recorded in its config.json (its options, and the k and
    templates of the cache manifest it read), or None where the run has not started."""
    path = Path(run_dir) / RUN_CONFIG_FILE
    if not path.exists():
        return None
    record = read_run_record(path)  # a pre-mixing (flat) config.json is brought to today's layout
    options = record.get("options", {})
    cache = (record.get("mix", {}).get("caches") or [{}])[0]  # the first cache's capture settings
    templates = cache.get("templates") or {}
    return {"loss": _option(options, "kind"),
            "lr": _option(options, "lr"), "max_steps": _option(options, "max_steps"),
            "max_batch_tokens": _option(options, "max_batch_tokens"), "seed": _option(options, "seed"),
            "k": cache.get("k"), "teacher_template": _template_name(templates.get("teacher")),
            "student_template": _template_name(templates.get("student"))}


def _option(options: dict, name: str):
    """An option's value, found in a nested section too (a config may group its options)."""
    if name in options and not isinstance(options[name], dict):
        return options[name]
    for value in options.values():
        if isinstance(value, dict) and (found := _option(value, name)) is not None:
            return found
    return None


def _template_name(template) -> str | None:
    """A manifest records a template whole (a dict with its name), older ones by name."""
    return template.get("name") if isinstance(template, dict) else template


def run_summary(run_dir: Path) -> dict | None:
    return read_run_summary(run_dir)


def step_progress(kind: str, output: Path) -> str:
    """How far an unfinished step has come, from what it has written: an evaluation's tasks
    answered per benchmark (its answers are saved as they finish), a run's optimizer steps;
    "" where nothing tells."""
    from stages.evaluate.answer_journal import answered

    output = Path(output)
    if kind == "eval" and output.is_dir():
        parts = [f"{bench.name} {found[0]}/{found[1]}" for bench in sorted(output.iterdir())
                 if bench.is_dir() and (found := answered(bench)) is not None]
        return f"tasks answered: {', '.join(parts)}" if parts else ""
    if kind == "train" and (output / RUN_CONFIG_FILE).exists():
        steps = [r["step"] for r in read_metrics(output) if r.get("split") == "train"]
        total = read_run_record(output).get("options", {}).get("max_steps")
        return f"step {max(steps, default=0)}/{total}" if total else ""
    return ""
