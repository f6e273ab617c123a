"""A benchmark's answers saved task by task as the engine finishes them, so that an evaluation
stopped midway resumes with only the tasks still unanswered.

A sampled evaluation of a few thousand answers runs for an hour or more on a CPU; the grids
that run it across sessions are stopped without warning, and before this journal the whole
benchmark's answers were lost with the call. <benchmark>/generations.partial.jsonl holds:

    line 1      {"settings": ...}  the generation settings (run.py's `wanted`): a journal begun
                                   with other settings is refused, never mixed in
    each next   {"call": k, "elapsed_s": t, "record": {...}}  one task's record (as in
                                   generations.jsonl), finished t seconds into the k-th call

Each line is flushed and fsynced as it is written; a last line cut by a kill is dropped (and
cut from the file) when the journal is read back. The seconds the earlier calls spent are the
last elapsed_s of each, so tokens/s stays the rate of the answers kept. Once generations.jsonl
is written the journal goes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from stages.evaluate.errors import EvaluationError

PARTIAL_FILE = "generations.partial.jsonl"


class AnswerJournal:
    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = Path(path), settings
        self.call = 0
        self._file = None

    def read(self) -> tuple[dict[str, dict], float]:
        """(task id -> record of every task answered by an earlier call, seconds those calls
        spent); ({}, 0) without a journal. Sets the number of this call."""
        if not self.path.exists():
            return {}, 0.0
        raw = self.path.read_bytes()
        whole = raw[:raw.rfind(b"\n") + 1]
        if len(whole) < len(raw):  # a line cut by a kill
            with open(self.path, "r+b") as f:
                f.truncate(len(whole))
        lines = whole.decode().splitlines()
        if not lines:
            return {}, 0.0
        try:
            first = json.loads(lines[0])
            entries = [json.loads(line) for line in lines[1:]]
        except ValueError as exc:
            raise EvaluationError(f"{self.path}: not a journal of answers ({exc}); delete it to start over") from None
        saved = first.get("settings") if isinstance(first, dict) else None
        if not isinstance(saved, dict):
            raise EvaluationError(f"{self.path}: its first line holds no settings; delete it to start over")
        differ = [k for k in self.settings if saved.get(k) != self.settings[k]]
        if differ:
            raise EvaluationError(f"{self.path} was begun with other settings ({', '.join(differ)}); delete it "
                                  "or choose another output directory")
        records, last_elapsed = {}, {}
        for entry in entries:
            records[entry["record"]["task_id"]] = entry["record"]
            last_elapsed[entry["call"]] = max(last_elapsed.get(entry["call"], 0.0), entry["elapsed_s"])
        self.call = max(last_elapsed, default=0) + 1
        return records, sum(last_elapsed.values())

    def add(self, record: dict, elapsed_s: float) -> None:
        """Save one finished task's record, `elapsed_s` into this call."""
        if self._file is None:
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a")
            if fresh:
                self._write({"settings": self.settings})
        self._write({"call": self.call, "elapsed_s": round(elapsed_s, 3), "record": record})

    def _write(self, entry: dict) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """The answers are in generations.jsonl now."""
        self.close()
        self.path.unlink(missing_ok=True)


def answered(bench_dir: Path) -> tuple[int, int] | None:
    """(tasks answered, tasks asked) of one benchmark folder: all of them once generations.jsonl
    is written, else what its journal holds; None where neither exists yet."""
    bench_dir = Path(bench_dir)
    whole = bench_dir / "generations.jsonl"
    if whole.exists():
        n = sum(1 for line in whole.read_text().splitlines() if line.strip())
        return n, n
    journal = bench_dir / PARTIAL_FILE
    if not journal.exists():
        return None
    lines = [line for line in journal.read_text().splitlines() if line.strip()]
    try:
        asked = len(json.loads(lines[0])["settings"]["task_ids"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    done = {json.loads(line)["record"]["task_id"] for line in lines[1:] if line.endswith("}")}
    return len(done), asked
