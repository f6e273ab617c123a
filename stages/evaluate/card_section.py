"""The `evaluation` section of a model folder's card (common/model_card.py): the pass@1 `akd eval`
measured on that folder, with the settings it was measured under, the accuracy loss against the
teacher where a teacher evaluation scored the same way lies beside it, and nothing it did not measure."""
from __future__ import annotations

from pathlib import Path

from .accuracy import SAME_SCORING, accuracy_loss, comparable_teachers


def evaluation_section(summary: dict, evals_dir: Path | None = None) -> str:
    """Markdown for an evaluation summary (eval_folder.SUMMARY_FILE's content); `evals_dir`: where
    to look for the teacher's evaluation (the folder that holds this one's)."""
    how = (f"{summary.get('mode')} prompts, {summary.get('n_samples')} sample(s) per task at temperature "
           f"{summary.get('temperature')}, up to {summary.get('max_new_tokens')} new tokens, "
           f"{summary.get('backend')} backend; every answer run against the task's tests in akd's sandbox")
    teachers = comparable_teachers(evals_dir, summary) if evals_dir and summary.get("role") != "teacher" else []
    lines = ["## Evaluation", "", f"Measured by `akd eval` ({how}).", ""]
    if len(teachers) == 1:
        folder, teacher = teachers[0]
        lines += ["| benchmark | split | pass@1 | teacher pass@1 | accuracy loss | tasks |",
                  "|---|---|---|---|---|---|"]
        for name, scores in summary["benchmarks"].items():
            theirs = teacher.get("benchmarks", {}).get(name, {}).get("pass@1")
            loss = accuracy_loss(theirs, scores["pass@1"])
            lines.append(f"| {name} | {summary.get('split')} | {_pct(scores['pass@1'])} | {_pct(theirs)} | "
                         f"{_pct(loss)} | {scores.get('n_tasks', '')} |")
        lines += ["", f"Accuracy loss = (teacher - this model) / teacher, against the teacher's evaluation in "
                      f"`{folder}` ({teacher.get('model')}), scored the same way ({', '.join(SAME_SCORING)})."]
        return "\n".join(lines)
    lines += ["| benchmark | split | pass@1 | tasks |", "|---|---|---|---|"]
    lines += [f"| {name} | {summary.get('split')} | {_pct(scores['pass@1'])} | {scores.get('n_tasks', '')} |"
              for name, scores in summary["benchmarks"].items()]
    why = (f"{len(teachers)} teacher evaluations in {evals_dir} match it" if teachers else
           f"no teacher evaluation scored the same way ({', '.join(SAME_SCORING)}) lies in {evals_dir}"
           if evals_dir else "no teacher evaluation was looked for")
    lines += ["", f"No accuracy loss against the teacher is stated: {why}. Evaluate the teacher with "
                  "`akd eval --role teacher` and the same settings, then rerun `akd eval` on this folder "
                  "(its answers are reused)."]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
