"""`akd eval-export`: an evaluation's per-task verdicts, small enough for git, re-scorable.

For each scored benchmark of an evaluation folder, OUT/<file>.jsonl.gz holds one JSON line per
task and sample, in the benchmark's task order:

  task_id        "HumanEval/0", "Mbpp/601"
  sample         0 .. n_samples-1
  solution       the code extracted from the model's answer, exactly as it ran (null: the
                 prompt never reached the model, see status "skipped")
  passed         true when the program below exited cleanly after every test
  status         passed | failed | timeout | error | skipped (the sandbox's verdict)
  reason         the last line of the program's stderr ("AssertionError", "NameError: ...";
                 "" when it passed), at most 300 characters
  finish_reason  stop | length (length: the answer hit max_new_tokens)
  answer         the model's raw answer text (only with --with-answers)

<file> is the benchmark's name, plus `_<split>` for an MBPP split other than test
(`mbpp_train.jsonl.gz`). OUT/samples.json names the model, how its answers were made (mode,
split, template, max_new_tokens, ...), and per file the task count, pass@1, sha256 and the
sha256 of the harness and benchmark data files that scored it. Files are gzip with no
timestamp: exporting the same evaluation twice gives the same bytes.

The program that ran is not stored (it is the solution plus the task's tests and akd's
harness, the same for every model). Rebuild it exactly with akd:

    from stages.evaluate.datasets import load_tasks
    task = {t.task_id: t for t in load_tasks("mbpp", split="train")}["Mbpp/601"]
    program = task.program(row["solution"])  # harness.py + test imports + solution + tests

or, for another harness, run `row["solution"]` followed by the task's own tests (HumanEval:
`test` then `check(entry_point)`; MBPP: `test_setup_code` then the `test_list` asserts).
akd's harness adds one check to plain execution: a function the tests call must return plain
data (see harness.py), so another harness can pass a few answers akd fails, never the reverse.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write as write_atomic
from common.settings import setting
from stages.evaluate.datasets import CHECKSUMS, HARNESS
from stages.evaluate.errors import EvaluationError
from stages.evaluate.eval_folder import read_summary
from stages.evaluate.saved import SavedBenchmark, load_benchmark, saved_benchmarks

INDEX_FILE = "samples.json"
INDEX_KIND = "akd-eval-samples"
REASON_CHARS = 300
DATA_FILES = {"humaneval": "HumanEval.jsonl.gz", "mbpp": "mbpp.jsonl",
              "mbpp_sanitized": "sanitized-mbpp.json"}
# What made the answers: copied from generation.json into samples.json.
GENERATION_KEYS = ("model", "mode", "split", "template", "max_new_tokens", "temperature",
                   "n_samples", "seed")


@dataclass
class SampleExportConfig:
    benchmarks: tuple[str, ...] = setting((), "Benchmarks to export (repeat); default: every one "
                                              "the evaluation scored.", flag="--benchmark")
    with_answers: bool = setting(False, "Also write each sample's raw answer text (larger files).")


def file_stem(benchmark: str, split: str) -> str:
    """`mbpp` for the test split, `mbpp_train` for the train split."""
    return benchmark if split == "test" else f"{benchmark}_{split}"


def sample_rows(saved: SavedBenchmark, with_answers: bool = False) -> list[dict]:
    """One row per task and sample (the fields in this module's docstring)."""
    rows = []
    for generation, result in zip(saved.generations, saved.results):
        solutions, samples = result.get("solutions") or [], generation.get("samples") or []
        for i, status in enumerate(result["statuses"]):
            message = result["messages"][i] if i < len(result["messages"]) else ""
            row = {"task_id": result["task_id"], "sample": i,
                   "solution": solutions[i] if i < len(solutions) else None,
                   "passed": status == "passed", "status": status,
                   "reason": "" if status == "passed" else last_line(message),
                   "finish_reason": samples[i].get("finish_reason") if i < len(samples) else None}
            if with_answers:
                row["answer"] = samples[i].get("text") if i < len(samples) else None
            rows.append(row)
    return rows


def last_line(message: str) -> str:
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1][:REASON_CHARS] if lines else ""


def gzip_jsonl(rows: list[dict]) -> bytes:
    """The rows as gzip'd JSON lines, with no file name or time in the header (reproducible)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return buffer.getvalue()


def read_samples(path: str | Path) -> list[dict]:
    """The rows of an exported <file>.jsonl.gz."""
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def export_samples(eval_dir: str | Path, out_dir: str | Path,
                   config: SampleExportConfig = SampleExportConfig()) -> dict:
    """Write OUT/<file>.jsonl.gz for each benchmark and update OUT/samples.json; returns it."""
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    names = list(config.benchmarks) or saved_benchmarks(eval_dir)
    if not names:
        raise EvaluationError(f"{eval_dir}: no scored benchmark (no */results.jsonl) to export")
    saved = [load_benchmark(eval_dir, name) for name in names]
    index = _index(out_dir, eval_dir, saved)
    for benchmark in saved:
        rows = sample_rows(benchmark, config.with_answers)
        data = gzip_jsonl(rows)
        name = f"{file_stem(benchmark.name, benchmark.split)}.jsonl.gz"
        write_atomic(out_dir / name, data)
        index["files"][name] = _file_entry(benchmark, rows, data, config.with_answers)
    write_atomic(out_dir / INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())
    return index


def _index(out_dir: Path, eval_dir: Path, saved: list[SavedBenchmark]) -> dict:
    """samples.json as found in OUT (files of the same model kept), else a new one."""
    models = {b.settings.get("model") for b in saved}
    if len(models) != 1:
        raise EvaluationError(f"{eval_dir}: benchmarks answered by different models {sorted(map(str, models))}")
    model = models.pop()
    summary = read_summary(eval_dir) or {}
    path = out_dir / INDEX_FILE
    if path.exists():
        try:
            index = json.loads(path.read_text())
        except ValueError as exc:
            raise EvaluationError(f"{path}: not JSON ({exc}); delete it to export here") from None
        if index.get("kind") != INDEX_KIND or index.get("model") != model:
            raise EvaluationError(f"{path} holds the samples of {index.get('model')!r}, not {model!r}; "
                                  "export each model to its own folder")
        return index
    return {"kind": INDEX_KIND, "version": 1, "model": model, "role": summary.get("role"),
            "meta": summary.get("meta", {}), "parameters": summary.get("parameters"),
            "fields": ["task_id", "sample", "solution", "passed", "status", "reason",
                       "finish_reason"],
            "rebuild": "the program that ran is task.program(solution), task = the row's task_id "
                       "in stages.evaluate.datasets.load_tasks(benchmark, split=split); see "
                       "stages/evaluate/export.py",
            "files": {}}


def _file_entry(benchmark: SavedBenchmark, rows: list[dict], data: bytes, answers: bool) -> dict:
    tasks = {}
    for row in rows:
        tasks.setdefault(row["task_id"], []).append(row["passed"])
    pass_at_1 = sum(sum(v) / len(v) for v in tasks.values()) / len(tasks) if tasks else None
    data_file = DATA_FILES.get(benchmark.name)
    return {"benchmark": benchmark.name, "eval_dir": str(benchmark.folder.parent),
            **{key: benchmark.settings.get(key) for key in GENERATION_KEYS},
            "n_tasks": len(tasks), "n_rows": len(rows),
            "passed_tasks": sum(any(v) for v in tasks.values()), "pass@1": pass_at_1,
            "with_answers": answers, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "harness_sha256": hashlib.sha256(HARNESS.encode()).hexdigest(),
            "data_file": data_file, "data_sha256": CHECKSUMS.get(data_file)}
