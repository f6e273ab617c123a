"""A plan's unit: one `Step` (an `akd` command, or an in-process choice, with one output
folder), and the checks that say whether a step's output is whole. Shared by the experiment
grid (study/plan.py, study/arms.py) and the on-policy rounds (study/onpolicy.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from study.engine.settings import ExperimentError


@dataclass
class Step:
    name: str
    kind: str  # select | choose | cache | budget | rollout | data | prune | train | eval | speed
    output: Path
    needs: tuple[str, ...] = ()
    command: Callable[[], list[str]] | None = None  # `akd` arguments, built when the step runs
    action: Callable[[], None] | None = None  # in-process work (a choice) instead of a command
    verify: Callable[[], bool] = field(default=lambda: True)  # the output is whole and usable
    meta: dict = field(default_factory=dict)  # what the report needs to place the result
    # what may go once the output verifies; a 0.5B run's resume checkpoint is ~8 GiB
    disposable: tuple[Path, ...] = ()
    # what study/keep.py copies to git when the step is done (None: its output, weights left out)
    keeps: tuple[Path, ...] | None = None
    # a finished step whose output is partly gone (weights) but whose kept part is whole: it
    # stays done, and runs again only for a step that needs its output (None: never)
    kept: Callable[[], bool] | None = None

    @property
    def kept_paths(self) -> tuple[Path, ...]:
        return (self.output,) if self.keeps is None else self.keeps



# ---- is an output whole? ----

def cache_is_whole(cache_dir: Path) -> bool:
    from cache_schema import CacheError, verify_cache

    try:
        verify_cache(cache_dir)
    except (CacheError, FileNotFoundError):
        return False
    return True


def run_is_whole(run_dir: Path, steps: int) -> bool:
    from transformers.utils import CONFIG_NAME  # final/ is a saved HF model folder

    from stages.distill.run_folder import FINAL_DIR, SUMMARY_FILE

    summary = run_dir / SUMMARY_FILE
    return ((run_dir / FINAL_DIR / CONFIG_NAME).exists() and summary.exists()
            and json.loads(summary.read_text()).get("steps") == steps)


def run_is_kept(run_dir: Path, steps: int) -> bool:
    """A finished run's record without its weights (study/keep.py): summary and metrics."""
    from stages.distill.run_folder import METRICS_FILE, SUMMARY_FILE

    summary = run_dir / SUMMARY_FILE
    return ((run_dir / METRICS_FILE).exists() and summary.exists()
            and json.loads(summary.read_text()).get("steps") == steps)


def eval_is_whole(out: Path, benchmarks: list[str], split: str) -> bool:
    from stages.evaluate.eval_folder import read_summary

    summary = read_summary(out)
    if summary is None:
        return False
    return summary.get("split") == split and all(b in summary.get("benchmarks", {}) for b in benchmarks)


def speed_is_whole(out: Path, prompts: int, new_tokens: int) -> bool:
    """speed.json is there, for this many prompts and new tokens, every token generated."""
    path = out / "speed.json"
    if not path.exists():
        return False
    record = json.loads(path.read_text())
    return (record.get("prompts"), record.get("new_tokens"), record.get("generated_tokens")) == (
        prompts, new_tokens, prompts * new_tokens)


def whole_when_known(check: Callable[[], bool]) -> Callable[[], bool]:
    """A check that needs an earlier choice or the budget reads False until they exist."""
    def verify() -> bool:
        try:
            return check()
        except ExperimentError:
            return False
    return verify
