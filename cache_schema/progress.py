"""Is a run still adding to this cache? Every reader asks before it trusts manifest.json.

A run that extends a sealed cache (a larger --limit, say) writes new shards beside the old
manifest and seals them only when it ends. Killed part-way, it leaves a manifest that is
true of the old examples but silent about the new shards: a reader would train on the old
examples without a word, and finalize would seal the partial run as complete. So each
worker's part says whether its run `finished`, and a cache whose unfinished part has
written shards the manifest does not list is part-way: readers refuse it, verify says to
rerun the command that was building it, finalize refuses to seal it. An unfinished part
that wrote nothing new (a run that died while its engine started) changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CacheError
from .manifest import PARTS_DIR, Manifest

RERUN = "rerun the command that was building it (it resumes where it stopped)"


class CacheInProgressError(CacheError):
    """A run is part-way through adding to the cache: what is on disk is not sealed."""


@dataclass(frozen=True)
class UnfinishedPart:
    path: Path
    worker: int
    unsealed_shards: list[str]  # its shards the manifest does not list


def unfinished_parts(cache_dir: Path, manifest: Manifest | None) -> list[UnfinishedPart]:
    """The parts whose run has not finished and that hold shards `manifest` (None: no manifest
    yet, every shard is unsealed) does not list."""
    folder = Path(cache_dir) / PARTS_DIR
    sealed = {s.name for s in manifest.shards} if manifest is not None else set()
    found = []
    for path in sorted(folder.glob("worker-*.json")) if folder.is_dir() else []:
        part = Manifest.load(path)
        new = [s.name for s in part.shards if s.name not in sealed]
        if not part.finished and (new or manifest is None):
            found.append(UnfinishedPart(path, int(path.stem.split("-")[1]), new))
    return found


def describe(cache_dir: Path, parts: list[UnfinishedPart], manifest: Manifest | None) -> str:
    """One line: which run is part-way, what the manifest seals, what to do."""
    workers = ", ".join(f"worker {p.worker} ({len(p.unsealed_shards)} new shards, {p.path.name})" for p in parts)
    sealed = (f"its manifest seals {manifest.rows} examples from before that run" if manifest is not None
              else "it has no manifest yet")
    return f"{cache_dir} is part-way through a run that adds to it: {workers} has not finished, and {sealed}"


def refuse_in_progress(cache_dir: Path, manifest: Manifest | None, then: str = "then use it") -> None:
    """Raise CacheInProgressError when an unfinished run has written shards the manifest does not list."""
    parts = unfinished_parts(cache_dir, manifest)
    if parts:
        raise CacheInProgressError(f"{describe(cache_dir, parts, manifest)}; {RERUN}, {then}")
