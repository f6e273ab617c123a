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

Text files of some size (an evaluation's answers and verdicts, a log) are kept gzipped, as
<name>.kept.gz (a sampled evaluation's ~6 MB of JSON lines take ~1.3 MB): the committed tree stays
small enough for a clone, and for the 64 MiB a device machine takes. Restore unpacks them.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from stages.distill.run_folder import WEIGHT_DIRS
from stages.evaluate.answer_journal import PARTIAL_FILE
from study.engine.settings import ExperimentError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
MAX_KEPT_MB = 40  # one file as kept; a cache shard or an evaluation's answers are a few MB
PACKED = ".kept.gz"  # a kept text file, gzipped: restore writes it back under its name without this
PACK_SUFFIXES = (".jsonl", ".log")
PACK_MIN_BYTES = 64 * 1024


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
    `keep_dir` (packed where `_packs`); returns how many were copied (changed or new)."""
    root, keep_dir = Path(root), Path(keep_dir)
    files = [f for path in paths for f in kept_files(Path(path))]
    contents = {f: _pack(f) if _packs(f) else None for f in files}
    too_big = [f for f in files if _kept_size(f, contents[f]) > MAX_KEPT_MB * 2**20]
    if too_big:
        size = _kept_size(too_big[0], contents[too_big[0]])
        raise KeepError(f"{too_big[0]} is {size / 2**20:.0f} MB as kept, over the {MAX_KEPT_MB} MB a kept file "
                        "may take: not kept")
    copied = 0
    for file in files:
        plain = keep_dir / file.relative_to(root)
        packed = plain.with_name(plain.name + PACKED)
        target, other = (packed, plain) if contents[file] is not None else (plain, packed)
        if other.exists():  # kept the other way before (the file grew, or was kept before packing)
            other.unlink()
        if target.exists() and _same(file, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if contents[file] is None:
            shutil.copy2(file, target)
        else:
            _write_atomic(target, contents[file])
        copied += 1
    return copied


def forget_partial_answers(root: Path, keep_dir: Path, path: Path) -> int:
    """Delete from the keep folder the saved answers of an evaluation that has finished since they
    were kept (its generations.jsonl holds them now); returns how many went."""
    root, keep_dir = Path(root), Path(keep_dir)
    mirror = keep_dir / Path(path).relative_to(root)
    gone = 0
    found = [*mirror.rglob(PARTIAL_FILE), *mirror.rglob(PARTIAL_FILE + PACKED)] if mirror.is_dir() else []
    for stale in sorted(found):
        if not (root / _unpacked(stale.relative_to(keep_dir))).exists():
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
        target = root / _unpacked(file.relative_to(keep_dir))
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if file.name.endswith(PACKED):
                _write_atomic(target, gzip.decompress(file.read_bytes()))
            else:
                shutil.copy2(file, target)
            copied += 1
    return copied


def _is_weight(file: Path) -> bool:
    return file.suffix in WEIGHT_SUFFIXES


def _packs(file: Path) -> bool:
    return file.suffix in PACK_SUFFIXES and file.stat().st_size >= PACK_MIN_BYTES


def _pack(file: Path) -> bytes:
    return gzip.compress(file.read_bytes(), compresslevel=6, mtime=0)  # the same bytes for the same file


def _kept_size(file: Path, packed: bytes | None) -> int:
    return file.stat().st_size if packed is None else len(packed)


def _unpacked(relative: Path) -> Path:
    name = relative.name
    return relative.with_name(name.removesuffix(PACKED)) if name.endswith(PACKED) else relative


def _write_atomic(target: Path, data: bytes) -> None:
    """Write through a hidden temporary (never kept or restored): a stop midway leaves no half file."""
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)


def _same(a: Path, kept: Path) -> bool:
    """Whether `kept` (packed or not) holds what `a` holds."""
    if kept.name.endswith(PACKED):
        return gzip.decompress(kept.read_bytes()) == a.read_bytes()
    return a.stat().st_size == kept.stat().st_size and a.read_bytes() == kept.read_bytes()
