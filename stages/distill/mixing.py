"""Several teacher caches as one training mix (e.g. GKD's on-policy cache beside the teacher's).

Each cache gets a sampling probability: the given --cache-weight values normalised, or,
without weights, its share of all the caches' records (plain concatenation, in expectation).
The caches must come from one tokenizer (same fingerprint and vocabulary). Their k may
differ: every position is padded to the largest k with empty entries (PAD_ID), which the
loss skips, so a position's teacher distribution is exactly its own cache's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_schema import PAD_ID, CacheError, CacheReader
from cache_schema.encoding import PAD_LOGPROB

from .batching import Example
from .errors import TokenizerMismatchError
from .run_folder import PROBE_PREFIX


@dataclass(frozen=True)
class MixedCache:
    """One cache of the mix: where it is, its reader, its sampling probability."""

    path: str
    label: str  # names the cache in metrics (eval_fkl/<label>) and messages
    reader: CacheReader
    probability: float

    @property
    def manifest(self):
        return self.reader.manifest

    def record(self) -> dict:
        """What config.json keeps of this cache: path, weight and the manifest's identity."""
        m = self.manifest
        return {"path": str(Path(self.path).resolve()), "label": self.label, "probability": self.probability,
                "teacher": m.identity.get("teacher"), "tokenizer_fingerprint": m.identity.get("tokenizer_fingerprint"),
                "templates": m.identity.get("templates"), "sampling": m.identity.get("sampling"),
                "dataset": m.identity.get("dataset"), "identity": m.identity, "k": m.k,
                "vocab_size": m.vocab_size, "encoding": m.encoding, "format_version": m.format_version,
                "rows": m.rows, "response_tokens": m.response_tokens, "shards": len(m.shards)}


@dataclass(frozen=True)
class CacheMix:
    caches: tuple[MixedCache, ...]
    weighted: bool  # True: probabilities from --cache-weight; False: from the caches' sizes
    k: int  # entries per position in a batch: the largest k of the caches

    @property
    def probabilities(self) -> np.ndarray:
        return np.array([c.probability for c in self.caches], dtype=np.float64)

    @property
    def manifest(self):
        """The first cache's manifest: tokenizer and vocabulary are the same in all of them."""
        return self.caches[0].manifest

    def record(self) -> dict:
        return {"sampling": "weights" if self.weighted else "sizes", "k": self.k,
                "caches": [c.record() for c in self.caches]}

    def check_shards(self, world: int, loader_workers: int, rank: int = 0) -> None:
        """Every process, and every loader worker in it, reads its own shards of every cache;
        each shard this rank reads is the file its manifest lists (size and sha256: a shard copied
        in from another cache is refused before any step, not trained on)."""
        readers = max(1, loader_workers)
        for cache in self.caches:
            cache.reader.check_shards(cache.reader.shards_for(rank, world))
        for cache in self.caches:
            shards = len(cache.manifest.shards)
            if shards // world < readers:
                raise CacheError(f"{cache.path} has {shards} shard(s) for {world} process(es) x {readers} loader "
                                 "worker(s), and each of them reads its own shards of every cache: lower "
                                 "--num-workers or the number of processes")


def open_mix(paths, weights=()) -> CacheMix:
    """Open the caches and check they can be mixed; a problem is one line naming the caches."""
    readers = [_open(path) for path in paths]
    for path, reader in zip(paths[1:], readers[1:]):
        _same_tokenizer(paths[0], readers[0], path, reader, "mixed")
    raw = np.array(weights if weights else [r.manifest.rows for r in readers], dtype=np.float64)
    if raw.sum() <= 0:
        raise CacheError(f"the caches {', '.join(map(str, paths))} hold no records")
    probabilities = raw / raw.sum()
    labels = _labels(paths)
    caches = tuple(MixedCache(str(path), label, reader, float(p))
                   for path, label, reader, p in zip(paths, labels, readers, probabilities))
    return CacheMix(caches, weighted=bool(weights), k=max(r.manifest.k for r in readers))


def open_probes(paths, mix: CacheMix) -> tuple[MixedCache, ...]:
    """The caches only evaluated (--probe-cache), checked against the mix's tokenizer; labelled
    `probe-<folder>` so their metrics never read as a training cache's."""
    readers = [_open(path) for path in paths]
    first = mix.caches[0]
    for path, reader in zip(paths, readers):
        _same_tokenizer(first.path, first.reader, path, reader, "compared")
    return tuple(MixedCache(str(path), PROBE_PREFIX + label, reader, 0.0)
                 for path, label, reader in zip(paths, _labels(paths), readers))


def _same_tokenizer(first_path, first: CacheReader, path, other: CacheReader, what: str) -> None:
    expected = first.manifest.identity.get("tokenizer_fingerprint")
    found = other.manifest.identity.get("tokenizer_fingerprint")
    if found != expected or other.manifest.vocab_size != first.manifest.vocab_size:
        raise TokenizerMismatchError(
            f"caches {first_path} and {path} were made with different tokenizers (fingerprints {expected} "
            f"and {found}, vocabularies {first.manifest.vocab_size} and {other.manifest.vocab_size}): their "
            f"token ids differ, so they cannot be {what}")


def pad_topk(example: Example, k: int) -> Example:
    """The example with k entries per position, PAD_ID entries added at the end."""
    have = example.topk_ids.shape[1]
    if have == k:
        return example
    n = example.topk_ids.shape[0]
    example.topk_ids = np.concatenate([example.topk_ids, np.full((n, k - have), PAD_ID, example.topk_ids.dtype)], 1)
    example.topk_logprobs = np.concatenate(
        [example.topk_logprobs, np.full((n, k - have), PAD_LOGPROB, example.topk_logprobs.dtype)], 1)
    return example


def _open(path) -> CacheReader:
    if not Path(path).is_dir():
        raise CacheError(f"--cache {path}: not a folder (expected a teacher cache: manifest.json + shards/)")
    return CacheReader(path)


def _labels(paths) -> list[str]:
    """The caches' folder names, made metric-key safe and unique."""
    names = [re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(p).rstrip("/")).name) or "cache" for p in paths]
    return [name if names.count(name) == 1 else f"{name}-{i}" for i, name in enumerate(names)]
