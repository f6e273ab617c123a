"""The accuracy loss against the teacher, and which teacher evaluation a model's may be set against.

L = (pass@1(teacher) - pass@1(model)) / pass@1(teacher): 0 is the teacher's accuracy, 1 is
none of it. Two evaluations compare only when they scored the same tasks the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

from .eval_folder import SUMMARY_FILE, SUMMARY_KIND

SAME_SCORING = ("mode", "split", "limit", "n_samples", "temperature", "max_new_tokens")


def accuracy_loss(teacher: float | None, model: float | None) -> float | None:
    if teacher is None or model is None or teacher == 0:
        return None
    return (teacher - model) / teacher


def comparable_teachers(evals_dir: Path, summary: dict) -> list[tuple[Path, dict]]:
    """(folder, summary) of each teacher evaluation directly under evals_dir scored as `summary` was."""
    found = []
    for path in sorted(Path(evals_dir).glob(f"*/{SUMMARY_FILE}")):
        try:
            other = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # an unreadable folder is not a teacher evaluation
        if (isinstance(other, dict) and other.get("kind") == SUMMARY_KIND and other.get("role") == "teacher"
                and all(other.get(key) == summary.get(key) for key in SAME_SCORING)):
            found.append((path.parent, other))
    return found
