"""An evaluation's folder: the contract between `akd eval` and everything that reads its
results (reports, the study, eval-export, verified answers).

    <out>/summary.json                 the model's scores on every benchmark (kind "akd-eval"),
                                       role, run metadata, parameter count, generation totals
    <out>/<benchmark>/generation.json  the settings the answers were generated with, and the
                                       engine, tokens and seconds it took (tokens/s)
    <out>/<benchmark>/generations.jsonl  one line per task: prompt, raw answers, finish reasons
    <out>/<benchmark>/generations.partial.jsonl  while generating: the tasks answered so far
                                       (answer_journal.py); gone once generations.jsonl is written
    <out>/<benchmark>/results.jsonl    one line per task: statuses, messages, extracted solutions
    <out>/<benchmark>/summary.json     that benchmark's scores (kind "akd-eval-benchmark")
"""
from __future__ import annotations

import json
from pathlib import Path

SUMMARY_FILE = "summary.json"
SUMMARY_KIND = "akd-eval"
BENCHMARK_SUMMARY_KIND = f"{SUMMARY_KIND}-benchmark"
GENERATION_FILE = "generation.json"
GENERATIONS_FILE = "generations.jsonl"
RESULTS_FILE = "results.jsonl"


def read_summary(eval_dir: Path | str) -> dict | None:
    """The evaluation's summary.json, or None where it has not finished."""
    path = Path(eval_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def results_path(eval_dir: Path | str, benchmark: str) -> Path:
    return Path(eval_dir) / benchmark / RESULTS_FILE


def read_results(eval_dir: Path | str, benchmark: str) -> list[dict] | None:
    """One dict per task of a scored benchmark (results.jsonl), or None where it was not scored."""
    path = results_path(eval_dir, benchmark)
    if not path.exists():
        return None
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def scored_benchmarks(eval_dir: Path | str) -> list[str]:
    """The benchmarks of the folder that have been scored (they have a results.jsonl)."""
    folder = Path(eval_dir)
    return sorted(p.parent.name for p in folder.glob(f"*/{RESULTS_FILE}")) if folder.is_dir() else []
