"""Merges the workers' part manifests into the one manifest readers trust."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .errors import CacheError
from .manifest import MANIFEST_NAME, PARTS_DIR, Manifest, check_same_identity
from .progress import RERUN, CacheInProgressError


def finalize_cache(cache_dir) -> Manifest:
    """Write manifest.json from parts/worker-*.json; refuses parts of different caches."""
    cache_dir = Path(cache_dir)
    part_paths = sorted((cache_dir / PARTS_DIR).glob("worker-*.json"))
    if not part_paths:
        raise CacheError(f"{cache_dir}: no worker parts to finalize (parts/worker-*.json)")
    parts = [Manifest.load(p) for p in part_paths]
    running = [path.name for path, part in zip(part_paths, parts) if not part.finished]
    if running:
        raise CacheInProgressError(f"{cache_dir}: the run of {', '.join(running)} has not finished, so its "
                                   f"shards cannot be sealed as complete; {RERUN}, and it seals the cache "
                                   "itself (several workers: then finalize)")
    first = parts[0]
    for path, part in zip(part_paths[1:], parts[1:]):
        check_same_identity(path, part, first.identity, first.k, first.encoding, first.format_version)
    expected = max(p.num_workers for p in parts)
    if len(parts) < expected:
        present = sorted(s.worker for p in parts for s in p.shards[:1])
        raise CacheError(
            f"{cache_dir}: {len(parts)} of {expected} workers have reported "
            f"(parts present: {[p.name for p in part_paths]}; workers with shards: {present}); "
            "run the missing workers first")
    skipped: Counter = Counter()
    stats: dict = {}
    for part in parts:
        skipped.update(part.skipped)
        for key, value in part.stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in stats:
                stats[key] = stats[key] + value
            else:
                stats.setdefault(key, value)
    merged = Manifest(
        identity=first.identity, k=first.k, vocab_size=first.vocab_size, encoding=first.encoding,
        shards=sorted((s for p in parts for s in p.shards), key=lambda s: s.name),
        skipped=dict(sorted(skipped.items())), stats=stats, software=first.software,
        num_workers=expected, format_version=first.format_version,
    )
    merged.save(cache_dir / MANIFEST_NAME)
    return merged
