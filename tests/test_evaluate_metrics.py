"""The unbiased pass@k estimator against values worked out by hand."""
from math import comb

import pytest

from stages.evaluate.errors import EvaluationError
from stages.evaluate.metrics import mean_pass_at_k, pass_at_k, pass_at_ks
from stages.evaluate.score import summarize


def test_pass_at_1_is_the_fraction_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0


def test_known_values_from_the_binomial_formula():
    # n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252 = 11/12
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    for n, c, k in [(20, 4, 3), (100, 7, 10), (200, 1, 100)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_edges():
    assert pass_at_k(10, 0, 10) == 0.0  # nothing correct
    assert pass_at_k(10, 1, 10) == 1.0  # k = n: any correct sample is drawn
    assert pass_at_k(10, 8, 3) == 1.0  # fewer wrong samples than k
    with pytest.raises(EvaluationError):
        pass_at_k(5, 6, 1)
    with pytest.raises(EvaluationError):
        pass_at_k(5, 2, 6)


def test_means_over_tasks_only_where_every_task_has_k_samples():
    counts = [(10, 3), (10, 0), (10, 10)]
    assert mean_pass_at_k(counts, 1) == pytest.approx((0.3 + 0 + 1) / 3)
    assert mean_pass_at_k(counts, 11) is None
    assert set(pass_at_ks(counts, (1, 10, 100))) == {"pass@1", "pass@10"}


def test_summarize_counts_statuses_and_pass_at_1():
    results = [{"n": 1, "c": 1, "statuses": ["passed"]}, {"n": 1, "c": 0, "statuses": ["failed"]},
               {"n": 1, "c": 0, "statuses": ["timeout"]}, {"n": 1, "c": 1, "statuses": ["passed"]}]
    summary = summarize(results)
    assert summary["pass@1"] == pytest.approx(0.5)
    assert summary["status_counts"] == {"failed": 1, "passed": 2, "timeout": 1}
    assert summary["n_tasks"] == 4
