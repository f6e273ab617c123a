"""`akd eval-export`: per-task samples that re-score to the same verdicts, reproducibly."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval_folders import WRONG_ANSWER, canned_eval, reference_answer  # noqa: E402
from pipeline.cli import main  # noqa: E402
from stages.evaluate import EvaluationError, Sandbox, load_tasks  # noqa: E402
from stages.evaluate.export import SampleExportConfig, export_samples, read_samples  # noqa: E402

ANSWERS = [lambda t: (reference_answer(t), "stop"),
           lambda t: (WRONG_ANSWER, "stop"),
           lambda t: ("```python\ndef broken(:\n```", "length")]


@pytest.fixture(scope="module")
def evals(tiny_teacher, data_dir, tmp_path_factory):
    """(HumanEval + MBPP test folder, MBPP train folder), three canned answers each."""
    test_dir, train_dir = tmp_path_factory.mktemp("test_eval"), tmp_path_factory.mktemp("train_eval")
    canned_eval(test_dir, tiny_teacher, data_dir, "humaneval", "test", ANSWERS)
    canned_eval(test_dir, tiny_teacher, data_dir, "mbpp", "test", ANSWERS)
    canned_eval(train_dir, tiny_teacher, data_dir, "mbpp", "train", ANSWERS)
    return test_dir, train_dir


def _results(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def test_rows_hold_what_ran_and_rebuild_to_the_same_verdicts(evals, data_dir, tmp_path):
    test_dir, train_dir = evals
    out = tmp_path / "samples"
    export_samples(test_dir, out)
    index = export_samples(train_dir, out)
    assert sorted(index["files"]) == ["humaneval.jsonl.gz", "mbpp.jsonl.gz", "mbpp_train.jsonl.gz"]
    sandbox = Sandbox(trust_model_code=True)
    for name, benchmark, split in (("humaneval", "humaneval", "test"), ("mbpp", "mbpp", "test"),
                                   ("mbpp_train", "mbpp", "train")):
        rows = read_samples(out / f"{name}.jsonl.gz")
        source = (test_dir if split == "test" else train_dir) / benchmark
        results = _results(source)
        assert [r["task_id"] for r in rows] == [r["task_id"] for r in results]
        assert [r["solution"] for r in rows] == [r["solutions"][0] for r in results]
        assert [r["passed"] for r in rows] == [True, False, False]
        assert [r["status"] for r in rows] == [r["statuses"][0] for r in results]
        assert rows[0]["reason"] == "" and rows[0]["finish_reason"] == "stop"
        assert rows[2]["reason"].startswith("SyntaxError") and rows[2]["finish_reason"] == "length"
        assert set(rows[0]) == {"task_id", "sample", "solution", "passed", "status", "reason",
                                "finish_reason"}
        entry = index["files"][f"{name}.jsonl.gz"]
        assert (entry["split"], entry["n_tasks"], entry["passed_tasks"]) == (split, 3, 1)
        assert entry["pass@1"] == pytest.approx(1 / 3)

        # akd's own program, rebuilt as the docs say, gives the same verdicts...
        tasks = {t.task_id: t for t in load_tasks(benchmark, split=split, data_dir=data_dir)}
        outcomes = sandbox.run_many([tasks[r["task_id"]].program(r["solution"]) for r in rows])
        assert [o.status for o in outcomes] == [r["status"] for r in rows]
        # ...and so does another harness: the solution, then the task's tests, plain python.
        for row in rows[:2]:
            task = tasks[row["task_id"]]
            plain = subprocess.run([sys.executable, "-c", f"{row['solution']}\n{task.tests}\n"],
                                   capture_output=True, timeout=60)
            assert (plain.returncode == 0) == row["passed"], plain.stderr[-300:]


def test_export_is_byte_identical_and_answers_are_optional(evals, tmp_path):
    test_dir, _ = evals
    first, second = tmp_path / "a", tmp_path / "b"
    export_samples(test_dir, first, SampleExportConfig(benchmarks=("mbpp",)))
    export_samples(test_dir, second, SampleExportConfig(benchmarks=("mbpp",)))
    assert (first / "mbpp.jsonl.gz").read_bytes() == (second / "mbpp.jsonl.gz").read_bytes()
    assert not (first / "humaneval.jsonl.gz").exists()
    full = export_samples(test_dir, tmp_path / "c", SampleExportConfig(with_answers=True))
    rows = read_samples(tmp_path / "c" / "mbpp.jsonl.gz")
    generations = [json.loads(line) for line in (test_dir / "mbpp" / "generations.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == [g["samples"][0]["text"] for g in generations]
    assert full["files"]["mbpp.jsonl.gz"]["with_answers"] is True


def test_command_and_its_errors(evals, tmp_path):
    test_dir, _ = evals
    runner = CliRunner()
    result = runner.invoke(main, ["eval-export", str(test_dir), str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "humaneval.jsonl.gz: 3 tasks, pass@1 = 33.3%" in result.output
    result = runner.invoke(main, ["eval-export", str(test_dir), str(tmp_path / "s"),
                                  "--benchmark", "mbpp_sanitized"])
    assert result.exit_code == 1
    assert "mbpp_sanitized/results.jsonl is missing: mbpp_sanitized was not scored there " \
           "(scored: humaneval, mbpp)" in result.output
    result = runner.invoke(main, ["eval-export", str(tmp_path / "none"), str(tmp_path / "s")])
    assert result.exit_code == 1 and "no such evaluation folder" in result.output

    index = json.loads((tmp_path / "s" / "samples.json").read_text())
    index["model"] = "another/model"
    (tmp_path / "s" / "samples.json").write_text(json.dumps(index))
    with pytest.raises(EvaluationError, match="holds the samples of 'another/model'"):
        export_samples(test_dir, tmp_path / "s")

    broken = tmp_path / "broken" / "mbpp"
    broken.mkdir(parents=True)
    for name in ("generation.json", "generations.jsonl"):
        (broken / name).write_text((test_dir / "mbpp" / name).read_text())
    (broken / "results.jsonl").write_text((test_dir / "mbpp" / "results.jsonl").read_text()[:-20] + "\n")
    with pytest.raises(EvaluationError, match=r"results.jsonl line 3: not JSON"):
        export_samples(tmp_path / "broken", tmp_path / "t")
