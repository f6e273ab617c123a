"""The comparison table of teacher, original student(s) and distilled runs, from saved
summaries (see DEFINITIONS). A distilled run is compared with its original student (meta
"base_model", or the only student evaluated) and with the best run (lowest mean loss) of
every other loss trained on the same cache (meta "cache") from the same student."""
from __future__ import annotations

import json
from pathlib import Path

from stages.evaluate.accuracy import accuracy_loss
from stages.evaluate.errors import EvaluationError
from stages.evaluate.eval_folder import SUMMARY_FILE, SUMMARY_KIND
from study.engine.chart import bar_chart

DEFINITIONS = (
    "pass@1: greedy decoding, one sample per task, its tests run in the sandbox. "
    "Accuracy loss L = (pass@1(teacher) - pass@1(model)) / pass@1(teacher), per benchmark; "
    "its mean averages the HumanEval and MBPP losses (docs/design.md). "
    "Reduction of accuracy loss against a reference run = (L_ref - L_run) / L_ref on the mean "
    "loss: 100% closes the whole gap to the teacher, 0 changes nothing, negative is worse; the "
    "references are the run's original student (the one it started from) and the best run of "
    "each other loss from the same student on the same cache.")
REPORT_BENCHMARKS = ("humaneval", "mbpp")
LOSS_NAMES = {"ce": "CE", "fkl": "KD", "rkl": "RKD", "akd": "AKD"}


def find_summaries(runs_dir: Path) -> list[dict]:
    """Every evaluation summary under runs_dir, with `name` (its folder, relative)."""
    runs_dir = Path(runs_dir)
    found = []
    for path in sorted(runs_dir.rglob(SUMMARY_FILE)):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict) and data.get("kind") == SUMMARY_KIND:
            data["name"] = data.get("meta", {}).get("run") or str(path.parent.relative_to(runs_dir))
            found.append(data)
    return found


def compare(summaries: list[dict]) -> list[dict]:
    """One row per summary: pass@1, accuracy losses and reductions (fractions, not %)."""
    teachers = [s for s in summaries if s["role"] == "teacher"]
    if len(teachers) != 1:
        names = ", ".join(s["name"] for s in teachers) or "none"
        raise EvaluationError(f"need exactly one teacher summary, found {len(teachers)}: {names}")
    teacher = _scores(teachers[0])
    rows = [_row(s, teacher) for s in summaries]
    students = [r for r in rows if r["role"] == "student"]
    distilled = [r for r in rows if r["role"] == "distilled"]
    for row in distilled:
        base = _original_student(row, students)
        row["original_student"] = base["name"] if base else None
        row["reduction_vs_student"] = _reduction(base, row)
        row["reduction_vs_loss"] = {}
        peers = [r for r in distilled if r["cache"] == row["cache"] and r["loss"] != row["loss"]
                 and r["base_model"] == row["base_model"]]
        for loss in sorted({p["loss"] for p in peers}):
            best = min((p for p in peers if p["loss"] == loss),
                       key=lambda p: _sort_key(p["accuracy_loss"]["mean"]))
            row["reduction_vs_loss"][loss] = {"run": best["name"],
                                              "reduction": _reduction(best, row)}
    order = {"teacher": 0, "student": 1, "distilled": 2}
    return sorted(rows, key=lambda r: (order[r["role"]], r["name"]))


def _scores(summary: dict) -> dict[str, float | None]:
    benches = summary.get("benchmarks", {})
    return {b: benches.get(b, {}).get("pass@1") for b in REPORT_BENCHMARKS}


def _row(summary: dict, teacher: dict) -> dict:
    meta = summary.get("meta", {})
    scores = _scores(summary)
    losses = {b: accuracy_loss(teacher[b], scores[b]) for b in REPORT_BENCHMARKS}
    return {"name": summary["name"], "model": summary["model"], "role": summary["role"],
            "loss": meta.get("loss"), "cache": meta.get("cache"),
            "base_model": meta.get("base_model"),
            "pass@1": {**scores, "mean": _mean(scores.values())},
            "accuracy_loss": {**losses, "mean": _mean(losses.values())}}


def _mean(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values) / len(values)


def _reduction(reference: dict | None, row: dict) -> float | None:
    ref = reference["accuracy_loss"]["mean"] if reference else None
    run = row["accuracy_loss"]["mean"]
    if ref is None or run is None or ref <= 0:
        return None  # no gap to reduce
    return (ref - run) / ref


def _original_student(row: dict, students: list[dict]) -> dict | None:
    if row["base_model"]:
        matches = [s for s in students if s["model"] == row["base_model"]]
        return matches[0] if matches else None
    return students[0] if len(students) == 1 else None


def _sort_key(value: float | None) -> float:
    return float("inf") if value is None else value


def build_report(runs_dir: Path, out_dir: Path) -> dict:
    """Scan runs_dir, write report.md, report.json and report.png to out_dir; return the JSON."""
    summaries = find_summaries(runs_dir)
    if not summaries:
        raise EvaluationError(f"{runs_dir}: no evaluation summary.json (kind {SUMMARY_KIND}) found")
    rows = compare(summaries)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"runs_dir": str(runs_dir), "rows": rows, "definitions": DEFINITIONS}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown(rows))
    bar_chart(rows, out_dir / "report.png")
    return report


def markdown(rows: list[dict]) -> str:
    found = {loss for r in rows for loss in r.get("reduction_vs_loss", {})}
    losses = [k for k in LOSS_NAMES if k in found] + sorted(found - set(LOSS_NAMES))
    head = (["run", "role", "loss", "cache", "HumanEval", "MBPP", "mean",
             "acc. loss HE", "acc. loss MBPP", "acc. loss mean", "red. vs student"]
            + [f"red. vs {LOSS_NAMES.get(loss, loss)}" for loss in losses])
    lines = ["# pass@1 and accuracy loss against the teacher", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["role"], r["loss"] or "", r["cache"] or "",
                 *(_pct(r["pass@1"][k]) for k in ("humaneval", "mbpp", "mean")),
                 *(_pct(r["accuracy_loss"][k]) for k in ("humaneval", "mbpp", "mean")),
                 _pct(r.get("reduction_vs_student"))]
        vs = r.get("reduction_vs_loss", {})
        cells += [_pct(vs[loss]["reduction"]) if loss in vs else "" for loss in losses]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", DEFINITIONS, ""]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
