"""Reading back what evaluate_model saved for one benchmark (see run.py for the layout).

Shared by the builders that turn an evaluation folder into something else (export.py,
verified.py): each bad file or line is a one-line EvaluationError naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stages.evaluate.errors import EvaluationError
from stages.evaluate.eval_folder import GENERATION_FILE, GENERATIONS_FILE, RESULTS_FILE, scored_benchmarks


@dataclass(frozen=True)
class SavedBenchmark:
    """One benchmark's saved evaluation: its generation settings, answers and results, the
    two lists aligned task by task."""
    name: str
    folder: Path
    settings: dict  # generation.json: model, mode, split, template, max_new_tokens, ...
    generations: list[dict]
    results: list[dict]

    @property
    def split(self) -> str:
        return self.settings.get("split", "test")


def saved_benchmarks(eval_dir: str | Path) -> list[str]:
    """The benchmarks of `eval_dir` that have been scored (a results.jsonl), by name."""
    folder = Path(eval_dir)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such evaluation folder")
    return scored_benchmarks(folder)


def load_benchmark(eval_dir: str | Path, name: str) -> SavedBenchmark:
    folder = Path(eval_dir) / name
    if not (folder / RESULTS_FILE).exists():
        found = saved_benchmarks(eval_dir)
        raise EvaluationError(f"{folder}/results.jsonl is missing: {name} was not scored there "
                              f"(scored: {', '.join(found) or 'none'})")
    settings_file = folder / GENERATION_FILE
    if not settings_file.exists():
        raise EvaluationError(f"{settings_file} is missing: cannot tell how the answers were made")
    try:
        settings = json.loads(settings_file.read_text())
    except ValueError as exc:
        raise EvaluationError(f"{settings_file}: not JSON ({exc})") from None
    generations = read_jsonl(folder / GENERATIONS_FILE)
    results = read_jsonl(folder / RESULTS_FILE)
    ids = [r.get("task_id") for r in results]
    if [g.get("task_id") for g in generations] != ids:
        raise EvaluationError(f"{folder}: generations.jsonl and results.jsonl hold different tasks "
                              "(a run stopped between them?); rerun akd eval there")
    for line, row in enumerate(results, 1):
        if not isinstance(row.get("statuses"), list) or not isinstance(row.get("messages"), list):
            raise EvaluationError(f"{folder}/results.jsonl line {line}: no statuses/messages lists")
    return SavedBenchmark(name, folder, settings, generations, results)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise EvaluationError(f"{path} is missing")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EvaluationError(f"{path} line {number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise EvaluationError(f"{path} line {number}: not a JSON object")
            rows.append(row)
    return rows
