"""Is method A really better than method B on these tasks, or is the gap noise?

Both methods are scored on the same tasks (HumanEval's 164, MBPP's 500), so the comparisons
are paired. Greedy answers are pass/fail: a paired bootstrap over tasks (scipy, BCa interval)
gives the difference in pass rate with a confidence interval, and McNemar's exact test asks
whether the tasks only A solves outnumber the tasks only B solves by more than chance would.
Sampled answers (n per task) give each task a pass rate c/n, the unbiased pass@1 estimate:
`compare_rates` tests the mean of the per-task differences (paired t-test), whose standard
error is what decides how many tasks and samples a question needs.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def _paired(a: dict[str, bool], b: dict[str, bool]) -> tuple[np.ndarray, np.ndarray]:
    """The two outcomes as 0/1 arrays over the same tasks, in sorted task order."""
    tasks = _same_tasks(a, b)
    for side, scores in (("a", a), ("b", b)):
        bad = next((t for t in tasks if scores[t] not in (True, False)), None)
        if bad is not None:
            raise ValueError(f"{side}[{bad!r}] is {scores[bad]!r}, not pass/fail (a bool)")
    return (np.array([bool(a[t]) for t in tasks], dtype=np.int64),
            np.array([bool(b[t]) for t in tasks], dtype=np.int64))


def _same_tasks(a: dict, b: dict) -> list[str]:
    """The task ids both sides scored, sorted; different sets or none at all are refused."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        example = (only_a or only_b)[0]
        raise ValueError(f"paired comparison needs the same tasks on both sides: {len(only_a)} task "
                         f"ids only in a, {len(only_b)} only in b (e.g. {example!r})")
    if not a:
        raise ValueError("paired comparison needs at least one task")
    return sorted(a)


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


def detectable_difference(n_tasks: int, discordant: int, *, alpha: float = 0.05,
                          power: float = 0.8) -> float | None:
    """The smallest true pass-rate difference McNemar's test finds with `power`, at this discordance.

    A "no" is only as telling as the test's power: with n tasks of which a share psi differ
    between the two models, Connor's (1987) normal approximation for McNemar's test,
    n = (z_{1-alpha/2} sqrt(psi) + z_power sqrt(psi - d^2))^2 / d^2, is solved for d.
    Returns a fraction (0.03 = three points), or None where nothing can be said (no task
    differs, so the test has no power at any difference it could observe).
    """
    if n_tasks < 1 or not 0 <= discordant <= n_tasks:
        raise ValueError(f"need 0 <= discordant ({discordant}) <= n_tasks ({n_tasks}) and n_tasks >= 1")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha ({alpha}) and power ({power}) must lie strictly between 0 and 1")
    psi = discordant / n_tasks
    if psi == 0:
        return None
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)

    def needed(d: float) -> float:  # tasks needed to detect d; falls as d grows
        return (z_alpha * np.sqrt(psi) + z_power * np.sqrt(max(psi - d * d, 0.0))) ** 2 / (d * d)

    if needed(psi) > n_tasks:  # even the largest difference this discordance allows is out of reach
        return None
    low, high = 1e-9, psi
    for _ in range(100):  # bisection: needed() is monotone in d
        mid = (low + high) / 2
        low, high = (mid, high) if needed(mid) > n_tasks else (low, mid)
    return high


def compare(a: dict[str, bool], b: dict[str, bool], *, names: tuple[str, str] = ("A", "B"),
            alpha: float = 0.05, **bootstrap_options) -> dict:
    """Bootstrap and McNemar together, with a one-line verdict decided by McNemar at `alpha`.

    Keys: n_tasks, pass_rate_a, pass_rate_b, diff, ci_low, ci_high, bootstrap_p_value,
    only_a, only_b, mcnemar_p_value, alpha, verdict (e.g. "A better (p=0.039)"), and
    detectable_diff: the difference this test would find 4 times in 5 (detectable_difference).
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
            "only_b": exact["only_b"], "mcnemar_p_value": p, "alpha": alpha, "verdict": verdict,
            "detectable_diff": detectable_difference(len(x), exact["only_a"] + exact["only_b"], alpha=alpha)}


def compare_pooled(a: dict[str, dict[str, bool]], b: dict[str, dict[str, bool]], *,
                   benchmarks: tuple[str, ...] | None = None, names: tuple[str, str] = ("A", "B"),
                   alpha: float = 0.05, test=None, **bootstrap_options) -> dict:
    """Two models compared per benchmark and pooled over every benchmark both were scored on.

    `a` and `b` map a benchmark's name (as the caller names it: "humaneval", "mbpp",
    "mbpp_train") to task id -> passed. By default the benchmarks used are those both sides
    hold, in `a`'s order; `benchmarks` names them instead (each must be on both sides).
    Within a benchmark both sides need the same tasks (compare() raises otherwise): a
    benchmark scored on different task sets is an error, never a silent intersection.

    The pooled test puts all those tasks in one paired sample (ids prefixed with the
    benchmark's name, so two benchmarks may reuse an id): every task weighs the same, so
    the pooled pass rate is the task-weighted mean, and McNemar counts every discordant task.
    Keys: benchmarks (the names used), left_out ({name: "only in A"/"only in B"}),
    per_benchmark ({name: compare() result}), pooled (compare() over all of them).
    `test`: the paired test to use instead of compare() (compare_rates, for per-task pass rates).
    """
    test = test or compare
    shared = [x for x in a if x in b]
    left_out = {x: f"only in {names[0]}" for x in a if x not in b}
    left_out.update({x: f"only in {names[1]}" for x in b if x not in a})
    if benchmarks is not None:
        missing = [x for x in benchmarks if x not in shared]
        if missing:
            raise ValueError(f"benchmark(s) {missing} are not scored on both sides "
                             f"({names[0]}: {sorted(a)}, {names[1]}: {sorted(b)})")
        left_out.update({x: "not asked for" for x in shared if x not in benchmarks})
        shared = list(benchmarks)
    if not shared:
        raise ValueError(f"no benchmark scored on both sides ({names[0]}: {sorted(a)}, "
                         f"{names[1]}: {sorted(b)})")
    options = dict(names=names, alpha=alpha, **bootstrap_options)
    per_benchmark = {x: test(a[x], b[x], **options) for x in shared}
    pooled_a = {f"{x}/{task}": ok for x in shared for task, ok in a[x].items()}
    pooled_b = {f"{x}/{task}": ok for x in shared for task, ok in b[x].items()}
    return {"benchmarks": shared, "left_out": left_out, "per_benchmark": per_benchmark,
            "pooled": test(pooled_a, pooled_b, **options)}


def compare_rates(a: dict[str, float], b: dict[str, float], *, names: tuple[str, str] = ("A", "B"),
                  alpha: float = 0.05, power: float = 0.8) -> dict:
    """Per-task pass rates (c/n of n sampled answers; a greedy bool counts as 0 or 1) compared by
    the paired t-test on their differences.

    Keys: n_tasks, pass_rate_a, pass_rate_b, diff (fractions), se (standard error of the mean
    difference), ci_low/ci_high (its t interval at 1 - alpha), p_value, alpha, verdict, and
    detectable_diff = (t_{1-alpha/2} + z_power) x se: the true difference this test finds with
    `power` (None where the differences have no spread). The t-test's mean needs no
    pass/fail data: over a few hundred tasks of bounded differences it is near normal.
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha ({alpha}) and power ({power}) must lie strictly between 0 and 1")
    tasks = _same_tasks(a, b)
    x, y = (np.array([_rate(side, scores, t) for t in tasks]) for side, scores in (("a", a), ("b", b)))
    d, n = x - y, len(tasks)
    diff = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    if se == 0.0:
        p, low, high, detectable = (1.0 if diff == 0 else 0.0), diff, diff, None
    else:
        t_crit = float(stats.t.ppf(1 - alpha / 2, n - 1))
        p = float(stats.ttest_rel(x, y).pvalue)
        low, high = diff - t_crit * se, diff + t_crit * se
        detectable = (t_crit + float(stats.norm.ppf(power))) * se
    if p < alpha:
        verdict = f"{names[0] if diff > 0 else names[1]} better (p={p:.2g})"
    else:
        verdict = f"no significant difference (p={p:.2g})"
    return {"n_tasks": n, "pass_rate_a": float(x.mean()), "pass_rate_b": float(y.mean()), "diff": diff,
            "se": se, "ci_low": low, "ci_high": high, "p_value": p, "alpha": alpha, "verdict": verdict,
            "detectable_diff": detectable}


def detectable_in_family(se: float, comparisons: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The true difference a comparison of this standard error finds with `power` when it must
    pass Holm's correction over `comparisons` as their smallest p (p below alpha / comparisons):
    what a yes to "does any of these arms win" asks of its best arm (normal approximation)."""
    if comparisons < 1 or se < 0:
        raise ValueError(f"need comparisons >= 1 ({comparisons}) and se >= 0 ({se})")
    return float((stats.norm.ppf(1 - alpha / (2 * comparisons)) + stats.norm.ppf(power)) * se)


def samples_per_task(a: dict[str, list[bool]], b: dict[str, list[bool]], *,
                     answers: tuple[int, ...] = (1, 2, 3, 5, 10, 20), alpha: float = 0.05,
                     power: float = 0.8) -> dict:
    """How the paired difference's standard error would move with another number of sampled
    answers per task, from each task's verdicts (passed or not) of A's and B's answers, in the
    order they were sampled.

    Given the task, a model's answers are independent draws, so the per-task differences'
    variance splits into the spread of the true differences between tasks (no number of answers
    removes it) and the sampling noise, which falls as 1/n. The evaluations draw answer i of every
    task with seed + i, the same for both models: two close models often write the same answer
    from the same seed (common random numbers), so A's and B's answer i are correlated and the
    noise of the difference is far smaller than two independent samples would have. It is
    estimated without bias per task from the answers themselves: var(a)/n_a + var(b)/n_b -
    2 m cov(a_i, b_i) / (n_a n_b), with the sample variances and the covariance of the m = min(n_a,
    n_b) answer pairs that share a seed (ddof 1); at most the whole observed variance. With m
    answers a side the noise would be noise_at_one / m (noise_at_one = var(a) + var(b) - 2 cov,
    averaged over tasks); at today's counts (equal on both sides) the projection is exactly
    today's standard error. (Answer i of every task shares its seed too; tasks are treated as
    independent, as the t-test does.)

    Keys: n_tasks, samples ((a's, b's) answers a task, the fewest), task_variance,
    noise_variance (of one task's difference, at today's counts), noise_at_one, noise_share,
    se_limit (with infinitely many answers), and projected: [{answers, se, detectable_diff}]
    (detectable at `alpha` with `power`, normal).
    """
    tasks = _same_tasks(a, b)
    if len(tasks) < 2:
        raise ValueError(f"need at least 2 shared tasks, got {len(tasks)}")
    n_a, n_b = (min(len(side[t]) for t in tasks) for side in (a, b))
    if min(n_a, n_b) < 2:
        raise ValueError(f"need at least 2 answers per task on each side to split the noise off, got {n_a} and {n_b}")
    x = [np.asarray(a[t][:n_a], dtype=np.float64) for t in tasks]
    y = [np.asarray(b[t][:n_b], dtype=np.float64) for t in tasks]
    m = min(n_a, n_b)
    var_a = np.array([v.var(ddof=1) for v in x])
    var_b = np.array([v.var(ddof=1) for v in y])
    cov = np.array([np.cov(u[:m], v[:m], ddof=1)[0, 1] for u, v in zip(x, y)])
    d = np.array([u.mean() - v.mean() for u, v in zip(x, y)])
    total = float(np.var(d, ddof=1))
    noise = max(float(np.mean(var_a / n_a + var_b / n_b - 2 * m * cov / (n_a * n_b))), 0.0)
    at_one = max(float(np.mean(var_a + var_b - 2 * cov)), 0.0)
    cap = min(1.0, total / noise) if noise > 0 else 1.0  # no more than all of it
    noise, at_one = noise * cap, at_one * cap
    task = total - noise
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    projected = []
    for count in answers:
        se = float(np.sqrt((task + at_one / count) / len(tasks)))
        projected.append({"answers": count, "se": se, "detectable_diff": z * se})
    return {"n_tasks": len(tasks), "samples": (n_a, n_b), "task_variance": task, "noise_variance": noise,
            "noise_at_one": at_one, "noise_share": noise / total if total else None,
            "se_limit": float(np.sqrt(task / len(tasks))), "projected": projected}


def best_answer_count(task_variance: float, noise_at_one: float, *, fixed_cost: float,
                      cost_per_answer: float, most: int = 20) -> int:
    """The answers per task that decide most per CPU hour: the n in 1..most with the least
    variance x cost, (task + noise_at_one / n) x (fixed_cost + cost_per_answer x n), where
    noise_at_one is the sampling noise of a task's difference with one answer a side,
    fixed_cost what a comparison costs before its first answer (the arm's training, the
    engines' starts) and cost_per_answer one more answer to every task. (The continuous
    optimum is sqrt(noise_at_one x fixed / (task x per_answer)): the more training an arm
    costs, and the more of the variance is sampling noise, the more answers pay.)"""
    if fixed_cost < 0 or cost_per_answer <= 0 or most < 1:
        raise ValueError(f"need fixed_cost >= 0, cost_per_answer > 0, most >= 1; got {fixed_cost}, "
                         f"{cost_per_answer}, {most}")
    return min(range(1, most + 1), key=lambda n: (precision_cost(task_variance, noise_at_one, n, fixed_cost=fixed_cost,
                                                                 cost_per_answer=cost_per_answer), n))


def precision_cost(task_variance: float, noise_at_one: float, answers: int, *, fixed_cost: float,
                   cost_per_answer: float) -> float:
    """Variance x cost of a comparison with `answers` a task (best_answer_count's measure): two
    counts' ratio is how much more one decides per CPU hour."""
    return (task_variance + noise_at_one / answers) * (fixed_cost + cost_per_answer * answers)


def _rate(side: str, scores: dict, task: str) -> float:
    value = scores[task]
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{side}[{task!r}] is {value!r}, not a pass rate in [0, 1]")
    return float(value)


def paired_weighted_bootstrap(a: dict[str, float], b: dict[str, float], weights: dict[str, float], *,
                              n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Two runs' per-sequence figures on the same held-out sequences (say FKL, each a mean over
    its tokens): the difference of their token-weighted means, A - B, with a BCa interval that
    resamples sequences (scipy). `weights`: each sequence's tokens.

    Keys: n_sequences, mean_a, mean_b, diff, ci_low, ci_high (same units as the figures).
    """
    ids = _same_tasks(a, b)
    d = np.array([a[i] - b[i] for i in ids], dtype=np.float64)
    w = np.array([weights[i] for i in ids], dtype=np.float64)
    if not (w > 0).all():
        raise ValueError("every sequence needs a positive weight (its tokens)")

    def weighted(values: np.ndarray) -> float:
        return float((values * w).sum() / w.sum())

    diff = weighted(d)
    found = {"n_sequences": len(ids), "mean_a": weighted(np.array([a[i] for i in ids])),
             "mean_b": weighted(np.array([b[i] for i in ids])), "diff": diff}
    if len(ids) < 2 or np.allclose(d, d[0]):
        return {**found, "ci_low": diff, "ci_high": diff}
    result = stats.bootstrap((d, w), lambda x, y, axis: (x * y).sum(axis=axis) / y.sum(axis=axis), paired=True,
                             vectorized=True, n_resamples=n_resamples, confidence_level=confidence, method="BCa",
                             random_state=np.random.default_rng(seed))
    return {**found, "ci_low": float(result.confidence_interval.low), "ci_high": float(result.confidence_interval.high)}


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (each name -> adjusted p): asking
    "does any of these 7 arms beat the student?" at 0.05 per arm would say yes by chance about
    3 times in 10. An adjusted p < alpha keeps the family's error rate at alpha. (Written here:
    scipy has only Benjamini-Hochberg, and statsmodels is not worth a dependency for it.)"""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[key]))
        adjusted[key] = running
    return adjusted

