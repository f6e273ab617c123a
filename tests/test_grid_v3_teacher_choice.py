"""Grid v3's choice of the pruned student's teacher (study/grid_v3/teacher_choice.py): the NLL of
reference programs no teacher wrote decides, and only a separated difference moves it off the 1.5B."""
import numpy as np
import pytest

from study.engine.runner import step_state
from study.engine.settings import ExperimentError
from study.grid_v3.config import GridV3Config
from study.grid_v3.plan import build_plan
from study.grid_v3.teacher_choice import choose_small_teacher


def _rows(nll: np.ndarray, tokens: np.ndarray) -> dict:
    return {f"refs:{i}:0": {"ce": float(c), "tokens": int(t)} for i, (c, t) in enumerate(zip(nll, tokens))}


def _runs(shift: float, noise: float = 0.05, n: int = 60) -> dict:
    """Both runs start from the same NLL; the parent's run ends `shift` nats a token below the 1.5B's."""
    rng = np.random.default_rng(0)
    before, tokens = rng.uniform(1.0, 2.0, n), rng.integers(20, 200, n)
    teacher_after = before - 0.3 + rng.normal(0, noise, n)
    parent_after = teacher_after - shift + rng.normal(0, noise, n)
    common = {"before": _rows(before, tokens), "steps": 100}
    return {"parent": {**common, "after": _rows(parent_after, tokens), "tokens_seen": 98_000, "model": "0.5b",
                       "cache": "caches/codealpaca-parent"},
            "teacher": {**common, "after": _rows(teacher_after, tokens), "tokens_seen": 102_000, "model": "1.5b",
                        "cache": "caches/codealpaca"}}


def test_the_parent_wins_only_when_its_run_is_separated_below_the_1_5b():
    won = choose_small_teacher(_runs(shift=0.1))
    assert won["chosen"] == "parent" and won["cache"] == "caches/codealpaca-parent"
    test = won["parent_minus_teacher"]
    assert test["ci_high"] < 0 and test["diff"] == pytest.approx(-0.1, abs=0.02) and test["n_sequences"] == 60
    assert "unpruned parent" in won["reason"] and "95% CI" in won["reason"]
    drop = won["runs"]["parent"]
    assert drop["probe_nll_before"] - drop["probe_nll_after"] == pytest.approx(0.4, abs=0.03)
    assert drop["nll_drop_per_m_tokens"] == pytest.approx(
        (drop["probe_nll_before"] - drop["probe_nll_after"]) / 0.098)


def test_the_1_5b_stays_on_a_difference_the_interval_cannot_separate_and_wins_a_separated_one():
    tie = choose_small_teacher(_runs(shift=0.002))
    assert tie["chosen"] == "teacher" and tie["parent_minus_teacher"]["ci_low"] < 0 < tie["parent_minus_teacher"]["ci_high"]
    assert "so the 1.5B stays" in tie["reason"]
    lost = choose_small_teacher(_runs(shift=-0.1))
    assert lost["chosen"] == "teacher" and lost["parent_minus_teacher"]["ci_low"] > 0 and "stays" not in lost["reason"]


def test_a_run_without_probe_figures_is_one_clear_line():
    runs = _runs(0.1)
    runs["parent"]["after"] = {}
    with pytest.raises(ExperimentError, match="none from parent .*--probe-cache"):
        choose_small_teacher(runs)


def test_the_pruned_students_arms_wait_for_the_choice_and_the_parent_answers_the_same_rows(tmp_path):
    steps = {s.name: s for s in build_plan(GridV3Config(out_dir=str(tmp_path)), "amx")}
    with pytest.raises(ExperimentError, match="small-teacher.json is missing"):
        steps["train-small-akd"].command()
    assert step_state(tmp_path, steps["train-small-akd"]) == "pending"
    assert set(steps["train-small-akd"].needs) >= {"choose-small-teacher", "cache-codealpaca-parent",
                                                   "cache-codealpaca", "prune-small"}
    parent, teacher = steps["cache-codealpaca-parent"].command(), steps["cache-codealpaca"].command()
    assert parent[parent.index("--teacher") + 1] == "qwen2.5-coder-0.5b-instruct"
    differ = {a for a, b in zip(parent, teacher) if a != b}
    assert differ == {"qwen2.5-coder-0.5b-instruct", str(tmp_path / "caches" / "codealpaca-parent")}
    assert steps["choose-small-teacher"].needs == ("train-small-from-parent", "train-small-from-teacher")
