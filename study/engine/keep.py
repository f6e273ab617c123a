"""A grid that outlives its machine: each finished step's small outputs, copied into a folder
that is committed to git (`ExperimentConfig.keep_dir`), and copied back by a fresh clone.

The grid runs for longer than one machine may live. What a later step or the report reads
(step records, choices, the budget, caches, rollouts, evaluation folders, a run's metrics and
summary, speed records) is small and is kept; model weights (a run's final/ and checkpoints/,
a pruned model) are not. A finished training run whose weights are gone stays done: the
runner trains it again only when a step that is not done needs those weights
(study/runner.py). The keep folder mirrors the grid folder, path for path. An evaluation stopped
midway is kept too when asked (`keep_experiment`): the answers it saved so far, so that a machine of
the same CPU class resumes it; they leave the keep folder once it finishes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from stages.distill.run_folder import WEIGHT_DIRS
from stages.evaluate.answer_journal import PARTIAL_FILE
from study.engine.settings import ExperimentError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
MAX_KEPT_MB = 40  # one file; a cache shard or an evaluation's answers are a few MB


class KeepError(ExperimentError):
    """A step output too large for the keep folder (git)."""


def kept_files(path: Path) -> list[Path]:
    """The files under `path` (a file or a folder) worth keeping: all but model weights and
    hidden temporaries."""
    path = Path(path)
    if path.is_file():
        return [] if _is_weight(path) or path.name.startswith(".") else [path]
    if not path.is_dir():
        return []
    found = []
    for file in sorted(path.rglob("*")):
        parts = file.relative_to(path).parts
        if (file.is_file() and not _is_weight(file) and not any(p.startswith(".") for p in parts)
                and not any(p in WEIGHT_DIRS for p in parts[:-1])):
            found.append(file)
    return found


def keep(root: Path, keep_dir: Path, paths) -> int:
    """Copy the keepable files under each of `paths` (inside `root`) to the same place under
    `keep_dir`; returns how many were copied (changed or new)."""
    root, keep_dir = Path(root), Path(keep_dir)
    files = [f for path in paths for f in kept_files(Path(path))]
    too_big = [f for f in files if f.stat().st_size > MAX_KEPT_MB * 2**20]
    if too_big:
        raise KeepError(f"{too_big[0]} is {too_big[0].stat().st_size / 2**20:.0f} MB, over the "
                        f"{MAX_KEPT_MB} MB a kept file may take: not kept")
    copied = 0
    for file in files:
        target = keep_dir / file.relative_to(root)
        if target.exists() and _same(file, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
        copied += 1
    return copied


def forget_partial_answers(root: Path, keep_dir: Path, path: Path) -> int:
    """Delete from the keep folder the saved answers of an evaluation that has finished since they
    were kept (its generations.jsonl holds them now); returns how many went."""
    root, keep_dir = Path(root), Path(keep_dir)
    mirror = keep_dir / Path(path).relative_to(root)
    gone = 0
    for stale in sorted(mirror.rglob(PARTIAL_FILE)) if mirror.is_dir() else []:
        if not (root / stale.relative_to(keep_dir)).exists():
            stale.unlink()
            gone += 1
    return gone


def restore(keep_dir: Path, root: Path, last: str | None = None) -> int:
    """Copy every kept file that `root` lacks back into it; a file already in `root` wins
    (it is the live copy). `last`: the file (relative) copied after all others, whose presence
    then says the restore finished. Returns how many were copied."""
    keep_dir, root = Path(keep_dir), Path(root)
    if not keep_dir.is_dir():
        return 0
    copied = 0
    files = kept_files(keep_dir)
    files.sort(key=lambda f: f.relative_to(keep_dir).as_posix() == last)
    for file in files:
        target = root / file.relative_to(keep_dir)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
            copied += 1
    return copied


def _is_weight(file: Path) -> bool:
    return file.suffix in WEIGHT_SUFFIXES


def _same(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
