"""The report's arithmetic on synthetic summaries, checked against values worked out by hand.

Teacher 0.8 / 0.5 (HumanEval / MBPP). Accuracy losses (per benchmark, mean):
  student 0.60/0.30 -> 0.25, 0.40, 0.325     fkl 0.64/0.35 -> 0.20, 0.30, 0.25
  rkl     0.68/0.30 -> 0.15, 0.40, 0.275     akd 0.72/0.40 -> 0.10, 0.20, 0.15
Reductions of the mean loss: akd vs student (0.325-0.15)/0.325 = 7/13, vs fkl 0.1/0.25 = 0.4,
vs rkl 0.125/0.275 = 5/11; fkl vs akd (0.15-0.25)/0.15 = -2/3.
"""
import json

import pytest

from stages.evaluate.errors import EvaluationError
from stages.evaluate.eval_folder import SUMMARY_KIND
from study.accuracy_report import build_report, compare, find_summaries


def _write(runs, folder, role, he, mbpp, **meta):
    path = runs / folder / "eval" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "kind": SUMMARY_KIND, "model": f"models/{folder}", "role": role, "meta": meta,
        "benchmarks": {"humaneval": {"pass@1": he}, "mbpp": {"pass@1": mbpp}}}))
    (path.parent / "humaneval").mkdir()
    (path.parent / "humaneval" / "summary.json").write_text(
        json.dumps({"kind": f"{SUMMARY_KIND}-benchmark", "pass@1": he}))


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "teacher", "teacher", 0.8, 0.5)
    _write(runs, "student", "student", 0.6, 0.3)
    _write(runs, "kd", "distilled", 0.64, 0.35, loss="fkl", cache="c1")
    _write(runs, "kd-worse", "distilled", 0.6, 0.3, loss="fkl", cache="c1")
    _write(runs, "rkd", "distilled", 0.68, 0.30, loss="rkl", cache="c1")
    _write(runs, "akd", "distilled", 0.72, 0.40, loss="akd", cache="c1")
    _write(runs, "akd-other-cache", "distilled", 0.4, 0.2, loss="akd", cache="c2")
    (runs / "kd" / "train_summary.json").write_text("{}")
    (runs / "kd" / "summary.json").write_text(json.dumps({"kind": "train", "loss": 1.0}))
    return runs


def _by_name(rows):
    return {r["name"]: r for r in rows}


def test_accuracy_loss_and_reductions_by_hand(runs):
    rows = _by_name(compare(find_summaries(runs)))
    assert set(rows) == {"teacher/eval", "student/eval", "kd/eval", "kd-worse/eval", "rkd/eval",
                         "akd/eval", "akd-other-cache/eval"}
    student = rows["student/eval"]
    assert student["pass@1"]["mean"] == pytest.approx(0.45)
    assert student["accuracy_loss"] == pytest.approx({"humaneval": 0.25, "mbpp": 0.4,
                                                      "mean": 0.325})
    assert rows["teacher/eval"]["accuracy_loss"]["mean"] == 0.0
    akd = rows["akd/eval"]
    assert akd["accuracy_loss"] == pytest.approx({"humaneval": 0.1, "mbpp": 0.2, "mean": 0.15})
    assert akd["original_student"] == "student/eval"
    assert akd["reduction_vs_student"] == pytest.approx(7 / 13)
    vs = akd["reduction_vs_loss"]
    assert vs["fkl"] == {"run": "kd/eval", "reduction": pytest.approx(0.4)}  # the best KD run
    assert vs["rkl"]["reduction"] == pytest.approx(5 / 11)
    assert "akd" not in vs
    assert rows["kd/eval"]["reduction_vs_loss"]["akd"]["reduction"] == pytest.approx(-2 / 3)
    assert rows["akd-other-cache/eval"]["reduction_vs_loss"] == {}  # nothing else on cache c2


def test_report_files(runs, tmp_path):
    out = tmp_path / "report"
    report = build_report(runs, out)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    md = (out / "report.md").read_text()
    akd_line = next(line for line in md.splitlines() if line.startswith("| akd/eval "))
    assert "| 72.0% | 40.0% | 56.0% | 10.0% | 20.0% | 15.0% | 53.8% |" in akd_line
    assert "40.0%" in akd_line.split("53.8%")[1] and "45.5%" in akd_line
    assert "red. vs KD" in md and "red. vs RKD" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_teacher_must_be_unambiguous(runs, tmp_path):
    _write(runs, "teacher2", "teacher", 0.7, 0.5)
    with pytest.raises(EvaluationError, match="exactly one teacher"):
        build_report(runs, tmp_path / "r")
    with pytest.raises(EvaluationError, match="no evaluation summary"):
        build_report(tmp_path / "empty", tmp_path / "r")


def test_missing_benchmark_gives_na_not_a_wrong_number(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "teacher", "teacher", 0.8, 0.5)
    path = runs / "student" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"kind": SUMMARY_KIND, "model": "s", "role": "student",
                                "meta": {"run": "s"},
                                "benchmarks": {"humaneval": {"pass@1": 0.4}}}))
    rows = _by_name(compare(find_summaries(runs)))
    assert rows["s"]["accuracy_loss"]["humaneval"] == pytest.approx(0.5)
    assert rows["s"]["accuracy_loss"]["mean"] is None and rows["s"]["pass@1"]["mean"] is None
