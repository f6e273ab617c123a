"""The `evaluation` section of a model folder's card (common/model_card.py): the pass@1 `akd eval`
measured on that folder, with the settings it was measured under, and nothing it did not measure."""
from __future__ import annotations


def evaluation_section(summary: dict) -> str:
    """Markdown for an evaluation summary (eval_folder.SUMMARY_FILE's content)."""
    rows = [f"| {name} | {summary.get('split')} | {100 * scores['pass@1']:.1f}% | {scores.get('n_tasks', '')} |"
            for name, scores in summary["benchmarks"].items()]
    how = (f"{summary.get('mode')} prompts, {summary.get('n_samples')} sample(s) per task at temperature "
           f"{summary.get('temperature')}, up to {summary.get('max_new_tokens')} new tokens, "
           f"{summary.get('backend')} backend; every answer run against the task's tests in akd's sandbox")
    return "\n".join(["## Evaluation", "", f"Measured by `akd eval` ({how}).", "",
                      "| benchmark | split | pass@1 | tasks |", "|---|---|---|---|", *rows, "",
                      "The accuracy loss against the teacher is in `akd report` (it needs the teacher's "
                      "evaluation under the same settings)."])
