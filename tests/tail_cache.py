"""Teacher rows whose tail mass is tiny, and the fixed student that scores them.

Shared by the tail-precision tests and by the one-off command that wrote the version-1
fixture (tests/fixtures/v1_cache, written by the pre-version-2 CacheWriter of commit 38392e0):
the fixture's records must stay what `tail_examples()` makes, so do not change it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cache_schema import CachedExample

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "v1_cache"
VOCAB, K = 64, 4
IDENTITY = {"teacher": {"model": "tail", "revision": "test"}, "tokenizer_fingerprint": "sha256:tail",
            "templates": {}, "sampling": {"temperature": 0.0}, "dataset": {"path": "tail"}}


def tail_row(tail: float, rest: float, rng, vocab: int = VOCAB, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """One position: (ids [k], float32 log-probs [k]) with `rest` spread over ranks 2..k and
    `tail` outside the top k; the top-1 holds the remainder."""
    ids = rng.choice(vocab, size=k, replace=False)
    shares = np.sort(rng.dirichlet(np.ones(k - 1)))[::-1]
    probs = np.concatenate([[1.0 - rest - tail], rest * shares])
    return ids, np.log(probs).astype(np.float32)


def tail_examples(count: int = 6, seed: int = 0) -> list[CachedExample]:
    """Greedy answers whose tails range over 1e-9..1e-2 (several below float32's 6e-8 step)."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        n = int(rng.integers(3, 9))
        rows = [tail_row(10 ** rng.uniform(-9, -2), 10 ** rng.uniform(-6, -1), rng) for _ in range(n)]
        ids = np.stack([r[0] for r in rows])
        logprobs = np.stack([r[1] for r in rows])
        examples.append(CachedExample(f"tail:{i}:0", list(rng.integers(0, VOCAB, 3)), list(ids[:, 0]),
                                      ids, logprobs, "stop", logprobs[:, 0].copy()))
    return examples


def student_logits(rows: int, seed: int = 1):
    """A fixed float32 student [rows, VOCAB]: the same logits every run."""
    import torch

    return 3.0 * torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
