"""Log-probabilities as small integers: a piecewise-uniform grid on -log p, delta-coded.

The error that matters is in nats and only where the teacher puts real mass, so the grid
is fine (step `fine`) for p >= 1e-3, coarser (`coarse`) down to p = 1e-6 and coarser still
(`deep`) below. Each value is rounded to its nearest grid point, so the error is at most half
the local step (fine = 0.0196 keeps it under 0.01 nats where p >= 1e-3). A top-k list is
sorted, so its codes never decrease: we store the first code and the differences, which are
small non-negative integers that compress well; the decoder sums them back, and as every
code is absolute no error accumulates along the list.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

FINE_LIMIT = float(-np.log(1e-3))  # the grid is `fine` on -log p in [0, FINE_LIMIT)
COARSE_LIMIT = float(-np.log(1e-6))  # `coarse` on [FINE_LIMIT, COARSE_LIMIT), then `deep`
DEEPEST = 100.0  # -log p beyond this is stored as DEEPEST (p < 4e-44: no mass at all)


@dataclass(frozen=True)
class LogprobGrid:
    fine: float = 0.0196
    coarse: float = 0.2
    deep: float = 0.5

    def __post_init__(self):
        for name in ("fine", "coarse", "deep"):
            step = getattr(self, name)
            if not 0 < step <= 5:
                raise ValueError(f"log-prob grid step {name}={step} must be in (0, 5] nats")

    @cached_property
    def points(self) -> np.ndarray:
        """The -log p value of every code, increasing: code c decodes to -points[c]."""
        zones = [(0.0, FINE_LIMIT, self.fine), (FINE_LIMIT, COARSE_LIMIT, self.coarse),
                 (COARSE_LIMIT, DEEPEST, self.deep)]
        points = np.concatenate([np.arange(lo, hi, step) for lo, hi, step in zones] + [[DEEPEST]])
        if points.size > 1 << 16:
            raise ValueError(f"log-prob grid {self} has {points.size} codes, more than fit in 16 bits")
        return points

    @cached_property
    def _midpoints(self) -> np.ndarray:
        return (self.points[1:] + self.points[:-1]) / 2

    def max_error(self, logprob: float) -> float:
        """Largest rounding error (nats) for log-probs at or above `logprob`."""
        last = int(np.searchsorted(self.points, -logprob - 1e-12))  # first point at or past it
        return float(np.diff(self.points[: last + 1]).max() / 2)

    def encode(self, logprobs: np.ndarray) -> np.ndarray:
        """[n, k] log-probs, sorted per row -> [n, k] uint16 deltas of non-decreasing codes."""
        codes = np.searchsorted(self._midpoints, -np.asarray(logprobs, np.float64))
        # float noise may break the sort order by ~1e-4 nats: keep the codes non-decreasing
        codes = np.maximum.accumulate(codes, axis=1)
        deltas = np.diff(codes, axis=1, prepend=0)
        return deltas.astype(np.uint16)

    def decode(self, deltas: np.ndarray) -> np.ndarray:
        """[n, k] deltas -> [n, k] float32 log-probs."""
        codes = np.cumsum(deltas, axis=1, dtype=np.int64)
        return (-self.points.astype(np.float32))[codes]
