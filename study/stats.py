"""Is method A really better than method B on these tasks, or is the gap noise?

Both methods are scored pass/fail on the same tasks (HumanEval's 164, MBPP's 500), so
the comparisons are paired: a paired bootstrap over tasks (scipy, BCa interval) gives the
difference in pass rate with a confidence interval, and McNemar's exact test asks whether the tasks only A
solves outnumber the tasks only B solves by more than chance would.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _paired(a: dict[str, bool], b: dict[str, bool]) -> tuple[np.ndarray, np.ndarray]:
    """The two outcomes as 0/1 arrays over the same tasks, in sorted task order."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        example = (only_a or only_b)[0]
        raise ValueError(f"paired comparison needs the same tasks on both sides: {len(only_a)} task "
                         f"ids only in a, {len(only_b)} only in b (e.g. {example!r})")
    if not a:
        raise ValueError("paired comparison needs at least one task")
    tasks = sorted(a)
    for side, scores in (("a", a), ("b", b)):
        bad = next((t for t in tasks if scores[t] not in (True, False)), None)
        if bad is not None:
            raise ValueError(f"{side}[{bad!r}] is {scores[bad]!r}, not pass/fail (a bool)")
    return (np.array([bool(a[t]) for t in tasks], dtype=np.int64),
            np.array([bool(b[t]) for t in tasks], dtype=np.int64))


def paired_bootstrap(a: dict[str, bool], b: dict[str, bool], *, n_resamples: int = 10000,
                     seed: int = 0, confidence: float = 0.95) -> dict:
    """Pass-rate difference of A over B with a BCa bootstrap CI (scipy), resampling tasks.

    `diff`, `ci_low` and `ci_high` are fractions (0.05 = five percentage points).
    `p_value` is two-sided: how often a resampled difference lies at least as far from the
    observed one as the observed one lies from zero (the bootstrap distribution shifted to
    the null), counted as (1 + hits) / (1 + n_resamples) so it is never exactly 0.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    x, y = _paired(a, b)
    per_task = x - y  # -1, 0 or +1
    n, observed = len(per_task), float(per_task.mean())
    if np.all(per_task == per_task[0]):  # no spread: every resample gives the same difference
        return {"diff": observed, "ci_low": observed, "ci_high": observed, "p_value": 1.0,
                "n_tasks": n}
    result = stats.bootstrap((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), paired=True,
                             vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
                             method="BCa", random_state=np.random.default_rng(seed))
    # Differences are multiples of 1/n: compare counts, so the p-value does not depend on rounding.
    sums = np.rint(result.bootstrap_distribution * n)
    hits = int(np.count_nonzero(np.abs(sums - per_task.sum()) >= abs(per_task.sum())))
    return {"diff": observed, "ci_low": float(result.confidence_interval.low),
            "ci_high": float(result.confidence_interval.high),
            "p_value": min(1.0, (1 + hits) / (1 + n_resamples)), "n_tasks": n}


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair coin flips (scipy's binomtest)."""
    return 1.0 if n == 0 else float(stats.binomtest(k, n, 0.5).pvalue)


def mcnemar(a: dict[str, bool], b: dict[str, bool]) -> dict:
    """McNemar's exact test: are the tasks only A passes more (or fewer) than chance allows?"""
    x, y = _paired(a, b)
    only_a, only_b = int(np.sum(x > y)), int(np.sum(y > x))
    return {"only_a": only_a, "only_b": only_b,
            "p_value": binomial_two_sided_p(only_a, only_a + only_b), "n_tasks": len(x)}


def compare(a: dict[str, bool], b: dict[str, bool], *, names: tuple[str, str] = ("A", "B"),
            alpha: float = 0.05, **bootstrap_options) -> dict:
    """Bootstrap and McNemar together, with a one-line verdict decided by McNemar at `alpha`.

    Keys: n_tasks, pass_rate_a, pass_rate_b, diff, ci_low, ci_high, bootstrap_p_value,
    only_a, only_b, mcnemar_p_value, alpha, verdict (e.g. "A better (p=0.039)").
    """
    boot = paired_bootstrap(a, b, **bootstrap_options)
    exact = mcnemar(a, b)
    x, y = _paired(a, b)
    p = exact["p_value"]
    if p < alpha:
        winner = names[0] if exact["only_a"] > exact["only_b"] else names[1]
        verdict = f"{winner} better (p={p:.2g})"
    else:
        verdict = f"no significant difference (p={p:.2g})"
    return {"n_tasks": boot["n_tasks"], "pass_rate_a": float(x.mean()), "pass_rate_b": float(y.mean()),
            "diff": boot["diff"], "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
            "bootstrap_p_value": boot["p_value"], "only_a": exact["only_a"],
            "only_b": exact["only_b"], "mcnemar_p_value": p, "alpha": alpha, "verdict": verdict}
