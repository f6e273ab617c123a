"""Paired bootstrap and McNemar's exact test against hand-computed values."""
import math

import numpy as np
import pytest

from study.engine.stats import (binomial_two_sided_p, compare, compare_pooled, compare_rates, detectable_difference, holm,
                                mcnemar, paired_bootstrap, paired_weighted_bootstrap, samples_per_task,
                                best_answer_count)


def scores(pattern: str, prefix: str = "t") -> dict[str, bool]:
    """'1101' -> {'t0': True, 't1': True, 't2': False, 't3': True}."""
    return {f"{prefix}{i}": c == "1" for i, c in enumerate(pattern)}


def discordant(only_a: int, only_b: int, both: int = 5, neither: int = 3):
    """Two score dicts with the given discordant counts (plus some concordant tasks)."""
    a = "1" * only_a + "0" * only_b + "1" * both + "0" * neither
    b = "0" * only_a + "1" * only_b + "1" * both + "0" * neither
    return scores(a), scores(b)


def test_mcnemar_matches_the_exact_binomial_by_hand():
    result = mcnemar(*discordant(10, 2))
    # 2 * P(X <= 2 | n=12, p=1/2) = 2 * (1 + 12 + 66) / 4096
    assert result == {"only_a": 10, "only_b": 2, "p_value": pytest.approx(2 * 79 / 4096, abs=1e-12),
                      "n_tasks": 20}
    assert result["p_value"] == pytest.approx(0.0385742, abs=1e-6)
    assert mcnemar(*discordant(3, 0))["p_value"] == pytest.approx(2 / 8)  # 2 * (1/2)^3
    assert mcnemar(*discordant(5, 5))["p_value"] == 1.0  # 2 * P(X <= 5 | 10) > 1, capped
    assert binomial_two_sided_p(1, 4) == pytest.approx(2 * 5 / 16)


def test_mcnemar_is_symmetric_and_ignores_concordant_tasks():
    a, b = discordant(7, 1, both=2, neither=0)
    forward, backward = mcnemar(a, b), mcnemar(b, a)
    assert (forward["only_a"], forward["only_b"]) == (backward["only_b"], backward["only_a"]) == (7, 1)
    assert forward["p_value"] == backward["p_value"]
    more_concordant = mcnemar(*discordant(7, 1, both=40, neither=40))
    assert more_concordant["p_value"] == forward["p_value"]


def test_identical_results_mean_no_difference():
    a = scores("1100101110")
    boot, exact = paired_bootstrap(a, dict(a)), mcnemar(a, dict(a))
    assert boot["diff"] == boot["ci_low"] == boot["ci_high"] == 0.0 and boot["p_value"] == 1.0
    assert exact == {"only_a": 0, "only_b": 0, "p_value": 1.0, "n_tasks": 10}
    assert compare(a, a)["verdict"] == "no significant difference (p=1)"


def test_bootstrap_ci_holds_the_observed_diff_and_is_seeded():
    a, b = discordant(6, 3, both=20, neither=11)
    first = paired_bootstrap(a, b, n_resamples=3000, seed=7)
    assert first["diff"] == pytest.approx(3 / 40) and first["n_tasks"] == 40
    assert first["ci_low"] < first["diff"] < first["ci_high"]
    assert first["ci_low"] < 0 < first["ci_high"]  # a 3-task edge on 40 tasks is noise
    assert 0.05 < first["p_value"] <= 1
    assert paired_bootstrap(a, b, n_resamples=3000, seed=7) == first
    assert paired_bootstrap(a, b, n_resamples=3000, seed=8) != first
    narrower = paired_bootstrap(a, b, n_resamples=3000, seed=7, confidence=0.5)
    assert first["ci_low"] < narrower["ci_low"] <= narrower["ci_high"] < first["ci_high"]


def test_bootstrap_ci_matches_the_normal_approximation():
    # 200 tasks: A alone passes 40, B alone 20. The per-task difference has mean 0.1 and
    # standard deviation sqrt(0.3 - 0.01); the 95% CI is about 0.1 +- 1.96 * sd / sqrt(200).
    a, b = discordant(40, 20, both=70, neither=70)
    result = paired_bootstrap(a, b, n_resamples=20000, seed=0)
    half_width = 1.96 * math.sqrt(0.3 - 0.01) / math.sqrt(200)
    assert result["ci_low"] == pytest.approx(0.1 - half_width, abs=0.01)
    assert result["ci_high"] == pytest.approx(0.1 + half_width, abs=0.01)


def test_a_large_true_difference_is_significant_both_ways():
    rng = np.random.default_rng(1)
    strong = rng.random(300) < 0.7
    weak = strong & (rng.random(300) < 0.6)  # B fails about 40% of what A passes
    a = {f"HumanEval/{i}": bool(v) for i, v in enumerate(strong)}
    b = {f"HumanEval/{i}": bool(v) for i, v in enumerate(weak)}
    result = compare(a, b, names=("akd", "kd"))
    assert result["diff"] > 0.2 and result["ci_low"] > 0
    assert result["bootstrap_p_value"] < 0.01 and result["mcnemar_p_value"] < 0.01
    assert result["only_b"] == 0 and result["verdict"].startswith("akd better (p=")
    assert compare(b, a, names=("akd", "kd"))["verdict"].startswith("kd better (p=")
    assert result["pass_rate_a"] - result["pass_rate_b"] == pytest.approx(result["diff"])


def test_compare_verdict_uses_mcnemar_at_alpha():
    a, b = discordant(10, 2)
    assert compare(a, b)["verdict"] == "A better (p=0.039)"
    assert compare(b, a)["verdict"] == "B better (p=0.039)"
    assert compare(a, b, alpha=0.01)["verdict"] == "no significant difference (p=0.039)"


def test_mismatched_tasks_raise_with_counts():
    a, b = scores("1101"), scores("110")
    with pytest.raises(ValueError, match="1 task ids only in a, 0 only in b"):
        paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="0 task ids only in a, 2 only in b"):
        mcnemar(scores("11"), {**scores("11"), **scores("01", prefix="x")})
    with pytest.raises(ValueError, match="at least one task"):
        compare({}, {})
    with pytest.raises(ValueError, match=r"a\['t1'\] is 0.5, not pass/fail"):
        mcnemar({"t0": True, "t1": 0.5}, {"t0": True, "t1": False})


def test_pooled_comparison_finds_what_no_single_benchmark_can():
    # HumanEval: A alone passes 3, B alone 1 -> p = 2 * (1 + 4) / 16 = 0.625.
    # MBPP: A alone 7, B alone 1 -> p = 2 * (1 + 8) / 256. Pooled: 10 against 2 on 40 tasks,
    # p = 2 * (1 + 12 + 66) / 4096 = 0.0386 < 0.05 (the same task ids in both benchmarks).
    he_a, he_b = discordant(3, 1, both=4, neither=2)
    mb_a, mb_b = discordant(7, 1, both=6, neither=6)
    extra = scores("1111")
    result = compare_pooled({"humaneval": he_a, "mbpp": mb_a, "mbpp_train": extra},
                            {"humaneval": he_b, "mbpp": mb_b}, names=("akd", "student"),
                            n_resamples=2000)
    assert result["benchmarks"] == ["humaneval", "mbpp"]
    assert result["left_out"] == {"mbpp_train": "only in akd"}
    he, mb, pooled = result["per_benchmark"]["humaneval"], result["per_benchmark"]["mbpp"], result["pooled"]
    assert (he["only_a"], he["only_b"], he["n_tasks"]) == (3, 1, 10)
    assert he["mcnemar_p_value"] == pytest.approx(10 / 16)
    assert (mb["only_a"], mb["only_b"], mb["n_tasks"]) == (7, 1, 20)
    assert mb["mcnemar_p_value"] == pytest.approx(18 / 256)
    assert (pooled["only_a"], pooled["only_b"], pooled["n_tasks"]) == (10, 2, 30)
    assert pooled["mcnemar_p_value"] == pytest.approx(2 * 79 / 4096)
    assert pooled["pass_rate_a"] == pytest.approx((7 + 13) / 30)  # task-weighted
    assert pooled["pass_rate_b"] == pytest.approx((5 + 7) / 30)
    assert pooled["diff"] == pytest.approx(8 / 30)
    assert pooled["verdict"] == "akd better (p=0.039)"
    assert he["verdict"].startswith("no significant") and mb["verdict"].startswith("no significant")


def test_pooled_comparison_on_named_benchmarks_and_its_errors():
    a = {"humaneval": scores("1100"), "mbpp": scores("10", prefix="m")}
    b = {"humaneval": scores("1000"), "mbpp": scores("01", prefix="m")}
    only_he = compare_pooled(a, b, benchmarks=("humaneval",), n_resamples=500)
    assert only_he["benchmarks"] == ["humaneval"] and only_he["left_out"] == {"mbpp": "not asked for"}
    assert only_he["pooled"]["n_tasks"] == 4 and only_he["pooled"]["only_a"] == 1
    with pytest.raises(ValueError, match=r"\['mbpp_train'\] are not scored on both sides"):
        compare_pooled(a, b, benchmarks=("humaneval", "mbpp_train"))
    with pytest.raises(ValueError, match="no benchmark scored on both sides"):
        compare_pooled({"humaneval": a["humaneval"]}, {"mbpp": b["mbpp"]})
    with pytest.raises(ValueError, match="1 task ids only in a"):  # never a silent intersection
        compare_pooled({"humaneval": scores("11")}, {"humaneval": scores("1")})


def _mcnemar_power(n: int, psi: float, diff: float, sims: int = 2000, seed: int = 0) -> float:
    """Share of simulated paired samples (psi of n tasks discordant, A ahead by diff) McNemar rejects."""
    rng = np.random.default_rng(seed)
    disc = rng.binomial(n, psi, size=sims)
    only_a = rng.binomial(disc, (psi + diff) / (2 * psi))
    return float(np.mean([binomial_two_sided_p(int(k), int(m)) < 0.05 for k, m in zip(only_a, disc)]))


def test_detectable_difference_has_the_power_it_claims():
    n, psi = 664, 0.15
    d = detectable_difference(n, round(psi * n))
    assert 0.02 < d < 0.06  # about 3.9 points: what a 664-task comparison can see at this discordance
    assert _mcnemar_power(n, psi, d) == pytest.approx(0.8, abs=0.05)
    assert _mcnemar_power(n, psi, d / 2) < 0.4  # half of it is mostly missed
    # four times the tasks halve the detectable difference (it scales with 1 / sqrt(n))
    assert detectable_difference(4 * n, round(psi * 4 * n)) == pytest.approx(d / 2, rel=0.05)


def test_detectable_difference_edges():
    assert detectable_difference(100, 0) is None  # no task differs: nothing to say
    assert detectable_difference(10, 1) is None  # one discordant task of ten: no difference reachable
    assert compare(*discordant(10, 2))["detectable_diff"] == detectable_difference(20, 12)
    with pytest.raises(ValueError, match="discordant"):
        detectable_difference(10, 11)


def test_holm_steps_down_and_stays_monotone():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    # sorted 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, then 0.04 x 1 = 0.04 is raised to 0.06 (monotone)
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"only": 0.2}) == {"only": 0.2} and holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}


def sampled(rng, rates: np.ndarray, n: int, prefix: str = "t") -> dict[str, float]:
    """Per-task shares of n sampled answers that pass, each task passing at its own rate."""
    return {f"{prefix}{i}": rng.binomial(n, r) / n for i, r in enumerate(rates)}


def test_compare_rates_is_the_paired_t_test_on_per_task_rates():
    from scipy import stats

    a = {"t0": 0.8, "t1": 0.2, "t2": 1.0, "t3": 0.4, "t4": 0.6}
    b = {"t0": 0.6, "t1": 0.2, "t2": 0.6, "t3": 0.0, "t4": 0.8}
    found = compare_rates(a, b)
    d = np.array([0.2, 0.0, 0.4, 0.4, -0.2])
    assert found["diff"] == pytest.approx(0.16) and found["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(5))
    assert found["p_value"] == pytest.approx(stats.ttest_rel(list(a.values()), list(b.values())).pvalue)
    half = stats.t.ppf(0.975, 4) * found["se"]
    assert (found["ci_low"], found["ci_high"]) == pytest.approx((0.16 - half, 0.16 + half))
    assert found["detectable_diff"] == pytest.approx((stats.t.ppf(0.975, 4) + stats.norm.ppf(0.8)) * found["se"])
    assert found["verdict"].startswith("no significant difference")


def test_greedy_bools_are_rates_of_zero_or_one():
    a, b = discordant(10, 2)
    assert compare_rates(a, b)["diff"] == pytest.approx(compare(a, b)["diff"])
    with pytest.raises(ValueError, match="not a pass rate"):
        compare_rates({"t0": 1.5}, {"t0": 0.5})
    assert compare_rates({"t0": 0.5, "t1": 1.0}, {"t0": 0.5, "t1": 1.0})["p_value"] == 1.0  # no spread, no gap


def test_more_samples_per_task_shrink_the_standard_error_and_find_a_real_gap():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.05, 0.95, size=400)  # tasks of every difficulty
    better = np.clip(base + 0.04, 0, 1)  # a true gain of ~4 points
    greedy = compare_rates(sampled(rng, better, 1), sampled(rng, base, 1))
    five = compare_rates(sampled(rng, better, 5), sampled(rng, base, 5))
    twenty = compare_rates(sampled(rng, better, 20), sampled(rng, base, 20))
    assert twenty["se"] < five["se"] < greedy["se"]
    assert twenty["detectable_diff"] < 0.04 < greedy["detectable_diff"]
    assert twenty["verdict"].startswith("A better")


def verdicts(rng, rates: np.ndarray, n: int, *, like: np.ndarray | None = None,
             uniforms: np.ndarray | None = None) -> dict[str, list[bool]]:
    """n answers' verdicts per task, each passing at its task's rate; `uniforms` [tasks, n]: the
    draws to use (two models sampled from the same seeds share them)."""
    u = rng.random((len(rates), n)) if uniforms is None else uniforms
    return {f"t{i}": list(u[i] < r) for i, r in enumerate(rates)}


def _rates(found: dict) -> dict[str, float]:
    return {t: sum(v) / len(v) for t, v in found.items()}


def test_the_projection_to_other_answer_counts_is_exact_at_its_own_and_predicts_another():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.05, 0.95, size=3000)
    other = np.clip(base + rng.normal(0.0, 0.15, size=base.size), 0, 1)  # true task-level differences
    truth = float(np.var(other - base))
    a5, b5 = verdicts(rng, other, 5), verdicts(rng, base, 5)  # independent draws
    found = samples_per_task(a5, b5, answers=(5, 40))
    at_five, at_forty = found["projected"]
    assert at_five["se"] == pytest.approx(compare_rates(_rates(a5), _rates(b5))["se"], rel=1e-9)  # today's, exactly
    assert found["task_variance"] == pytest.approx(truth, rel=0.25) and found["samples"] == (5, 5)  # sd ~9% a draw
    measured_forty = compare_rates(_rates(verdicts(rng, other, 40)), _rates(verdicts(rng, base, 40)))["se"]
    assert at_forty["se"] == pytest.approx(measured_forty, rel=0.06)  # predicted from 5 answers a task
    assert found["se_limit"] < at_forty["se"] < at_five["se"]
    assert at_five["detectable_diff"] == pytest.approx(2.8016 * at_five["se"], rel=1e-4)
    assert 0 < found["noise_share"] < 1


def test_answers_drawn_from_the_same_seeds_are_projected_with_their_coupling():
    """Two close models sampled with the same seeds share most answers: the difference's noise is
    far below two independent samples', and the projection must know it."""
    rng = np.random.default_rng(4)
    base = rng.uniform(0.05, 0.95, size=3000)
    other = np.clip(base + rng.normal(0.0, 0.05, size=base.size), 0, 1)

    def coupled(n):
        u = rng.random((base.size, n))
        return verdicts(rng, other, n, uniforms=u), verdicts(rng, base, n, uniforms=u)

    found = samples_per_task(*coupled(5), answers=(40,))
    independent = samples_per_task(verdicts(rng, other, 5), verdicts(rng, base, 5), answers=(40,))
    assert found["noise_variance"] < 0.5 * independent["noise_variance"]
    measured = compare_rates(*(_rates(side) for side in coupled(40)))["se"]
    assert found["projected"][0]["se"] == pytest.approx(measured, rel=0.1)  # sd ~5% a draw, unbiased over 30
    assert found["task_variance"] == pytest.approx(float(np.var(other - base)), rel=0.25)


def test_the_projection_of_equal_models_is_all_noise_and_needs_two_answers():
    rng = np.random.default_rng(2)
    rates = rng.uniform(0.1, 0.9, size=2000)
    found = samples_per_task(verdicts(rng, rates, 5), verdicts(rng, rates, 5), answers=(5, 20))
    assert found["task_variance"] < 0.1 * found["noise_variance"]  # nothing but sampling noise
    assert found["projected"][1]["se"] == pytest.approx(found["projected"][0]["se"] / 2, rel=0.1)
    with pytest.raises(ValueError, match="at least 2 answers"):
        samples_per_task({"t0": [True], "t1": [False]}, {"t0": [True], "t1": [False]})


def test_the_answer_count_that_decides_most_per_hour_follows_the_closed_form():
    import math

    # noise at one answer 20x the task spread, training costs 60 min, an answer to every task 12 min
    n = best_answer_count(0.01, 0.2, fixed_cost=60, cost_per_answer=12)
    assert n == round(math.sqrt(0.2 * 60 / (0.01 * 12)))  # 10
    assert best_answer_count(0.01, 0.2, fixed_cost=0, cost_per_answer=12) == 1  # nothing fixed: spread thin
    assert best_answer_count(0.0, 0.2, fixed_cost=60, cost_per_answer=12, most=20) == 20  # all noise: as many
    assert best_answer_count(0.05, 0.005, fixed_cost=60, cost_per_answer=12) == 1  # no noise to average away
    with pytest.raises(ValueError, match="cost_per_answer > 0"):
        best_answer_count(0.01, 0.2, fixed_cost=60, cost_per_answer=0)


def test_two_answer_counts_project_each_sides_noise_by_its_own():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.05, 0.95, size=3000)
    other = np.clip(base + rng.normal(0.0, 0.1, size=base.size), 0, 1)
    a, b = verdicts(rng, other, 10), verdicts(rng, base, 3)
    found = samples_per_task(a, b, answers=(20,))
    assert found["samples"] == (10, 3)
    assert found["noise_variance"] + found["task_variance"] == pytest.approx(
        compare_rates(_rates(a), _rates(b))["se"] ** 2 * 3000)
    measured = compare_rates(_rates(verdicts(rng, other, 20)), _rates(verdicts(rng, base, 20)))["se"]
    assert found["projected"][0]["se"] == pytest.approx(measured, rel=0.06)


def test_pooled_rates_prefix_the_benchmarks_and_test_them_together():
    a = {"humaneval": {"t0": 0.8, "t1": 0.4}, "mbpp": {"t0": 0.6, "t1": 1.0, "t2": 0.2}}
    b = {"humaneval": {"t0": 0.6, "t1": 0.4}, "mbpp": {"t0": 0.6, "t1": 0.8, "t2": 0.0}}
    found = compare_pooled(a, b, test=compare_rates)
    together = compare_rates({f"{x}/{t}": r for x in a for t, r in a[x].items()},
                             {f"{x}/{t}": r for x in b for t, r in b[x].items()})
    assert found["pooled"] == together and found["pooled"]["n_tasks"] == 5
    assert found["per_benchmark"]["humaneval"] == compare_rates(a["humaneval"], b["humaneval"])


def test_pass_rates_are_read_from_an_evaluations_results(tmp_path):
    import json

    from study.engine.results import load_pass_rates

    (tmp_path / "mbpp").mkdir()
    rows = [{"task_id": "11", "statuses": ["passed", "failed", "passed", "passed", "timeout"]},
            {"task_id": "12", "statuses": ["failed"] * 5}]
    (tmp_path / "mbpp" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_pass_rates(tmp_path, "mbpp") == {"11": 0.6, "12": 0.0}


def test_the_weighted_bootstrap_weighs_sequences_by_their_tokens_and_holds_the_difference():
    rng = np.random.default_rng(1)
    ids = [f"s{i}" for i in range(200)]
    b = {i: float(rng.uniform(0.1, 0.5)) for i in ids}
    a = {i: b[i] - 0.02 + float(rng.normal(0, 0.01)) for i in ids}  # A lower by ~0.02 on every sequence
    tokens = {i: float(rng.integers(5, 300)) for i in ids}
    found = paired_weighted_bootstrap(a, b, tokens, n_resamples=2000)
    expected = sum((a[i] - b[i]) * tokens[i] for i in ids) / sum(tokens.values())
    assert found["diff"] == pytest.approx(expected) and found["n_sequences"] == 200
    assert found["ci_low"] < found["diff"] < found["ci_high"] < 0  # clearly lower
    assert found == paired_weighted_bootstrap(a, b, tokens, n_resamples=2000)  # seeded
    even = paired_weighted_bootstrap(a, b, dict.fromkeys(ids, 1.0), n_resamples=2000)
    assert even["diff"] == pytest.approx(float(np.mean([a[i] - b[i] for i in ids])))
    with pytest.raises(ValueError, match="positive weight"):
        paired_weighted_bootstrap(a, b, {**tokens, "s0": 0.0})


def test_a_difference_detectable_in_a_family_of_comparisons_needs_holms_smallest_threshold():
    from study.engine.stats import detectable_in_family
    assert detectable_in_family(0.01, 1) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert detectable_in_family(0.01, 11) == pytest.approx((2.837597 + 0.841621) * 0.01, rel=1e-5)  # z at 1 - 0.05/22
    with pytest.raises(ValueError, match="comparisons >= 1"):
        detectable_in_family(0.01, 0)
