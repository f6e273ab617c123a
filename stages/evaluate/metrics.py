"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", eq. 1), computed as a product for numerical stability:
pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k / i)."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from stages.evaluate.errors import EvaluationError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) passes."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise EvaluationError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float | None:
    """Mean over tasks of pass@k from (n, c) pairs; None when a task has fewer than k samples."""
    if not counts or any(n < k for n, _ in counts):
        return None
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))


def pass_at_ks(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """{"pass@k": value} for each k every task has samples for."""
    out = {}
    for k in ks:
        value = mean_pass_at_k(counts, k)
        if value is not None:
            out[f"pass@{k}"] = value
    return out


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(statuses).items()))
