"""An evaluation stopped while generating resumes from the answers it saved as they finished
(stages/evaluate/answer_journal.py), on the tiny model with the HF engine."""
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from inference import load_engine  # noqa: E402
from stages.evaluate import EvalConfig, EvaluationError, evaluate_model  # noqa: E402
from stages.evaluate.answer_journal import PARTIAL_FILE, AnswerJournal  # noqa: E402


class Stopped(Exception):
    """Stands for the kill at a session's end."""


class CountingEngine:
    """The real engine, counting the prompts it is asked for; stops after `stop_after` answers."""

    def __init__(self, engine, stop_after: int | None = None):
        self.engine, self.stop_after, self.asked = engine, stop_after, 0
        self.tokenizer, self.max_model_len = engine.tokenizer, engine.max_model_len

    def generate(self, prompts, spec, seeds=None, progress=None, on_done=None):
        self.asked += len(prompts)
        handed = []

        def hand_on(i, generations):
            if self.stop_after is not None and len(handed) == self.stop_after:
                raise Stopped
            handed.append(i)
            on_done(i, generations)

        return self.engine.generate(prompts, spec, seeds, progress, on_done=hand_on if on_done else None)


@pytest.fixture(scope="module")
def engine(tiny_teacher):
    engine = load_engine(str(tiny_teacher), backend="hf", max_model_len=1024, dtype="float32", batch_size=2)
    yield engine
    engine.close()


def _config(tiny_teacher, data_dir, out, **changes):
    return EvalConfig(**{**dict(model=str(tiny_teacher), out_dir=out, benchmarks=("humaneval",), backend="hf", limit=5,
                                max_new_tokens=8, max_model_len=1024, data_dir=data_dir, trust_model_code=True),
                         **changes})


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_stopped_evaluation_resumes_with_only_the_tasks_left(engine, tiny_teacher, data_dir, tmp_path):
    out = tmp_path / "eval"
    with pytest.raises(Stopped):
        evaluate_model(_config(tiny_teacher, data_dir, out), engine=CountingEngine(engine, stop_after=3))
    journal = out / "humaneval" / PARTIAL_FILE
    saved = _lines(journal)
    assert "settings" in saved[0] and [e["record"]["task_id"] for e in saved[1:]] == \
        ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert not (out / "humaneval" / "generations.jsonl").exists()

    resumed = CountingEngine(engine)
    summary = evaluate_model(_config(tiny_teacher, data_dir, out), engine=resumed)
    assert resumed.asked == 2  # the two tasks left, not all five
    generations = _lines(out / "humaneval" / "generations.jsonl")
    assert [g["task_id"] for g in generations] == [f"HumanEval/{i}" for i in range(5)]
    assert generations[:3] == [e["record"] for e in saved[1:]]  # the saved answers, as saved
    assert not journal.exists() and summary["benchmarks"]["humaneval"]["n_tasks"] == 5
    figures = json.loads((out / "humaneval" / "generation.json").read_text())
    assert figures["generation_s"] >= max(e["elapsed_s"] for e in saved[1:])  # the first call's seconds count


def test_a_journal_begun_with_other_settings_is_refused_and_a_cut_line_dropped(engine, tiny_teacher, data_dir,
                                                                                 tmp_path):
    out = tmp_path / "eval"
    with pytest.raises(Stopped):
        evaluate_model(_config(tiny_teacher, data_dir, out), engine=CountingEngine(engine, stop_after=2))
    journal = out / "humaneval" / PARTIAL_FILE
    with pytest.raises(EvaluationError, match=f"{PARTIAL_FILE} was begun with other settings \\(max_new_tokens\\)"):
        evaluate_model(_config(tiny_teacher, data_dir, out, max_new_tokens=16), engine=CountingEngine(engine))

    whole = journal.read_text()
    journal.write_text(whole + '{"call": 0, "elapsed_s": 1.0, "record": {"task_id": "Hu')  # killed mid-line
    wanted = json.loads(whole.splitlines()[0])["settings"]
    records, seconds = AnswerJournal(journal, wanted).read()
    assert sorted(records) == ["HumanEval/0", "HumanEval/1"] and seconds > 0
    assert journal.read_text() == whole  # the cut line is gone from the file too

    resumed = CountingEngine(engine)
    evaluate_model(_config(tiny_teacher, data_dir, out), engine=resumed)
    assert resumed.asked == 3 and not journal.exists()


def test_a_status_shows_how_far_an_unfinished_evaluation_and_run_came(engine, tiny_teacher, data_dir, tmp_path):
    from study.engine.results import step_progress

    out = tmp_path / "eval"
    assert step_progress("eval", out) == ""  # not begun
    with pytest.raises(Stopped):
        evaluate_model(_config(tiny_teacher, data_dir, out, benchmarks=("humaneval", "mbpp")),
                       engine=CountingEngine(engine, stop_after=2))
    assert step_progress("eval", out) == "tasks answered: humaneval 2/5"
    with pytest.raises(Stopped):  # HumanEval's 3 left finish it, then MBPP's call stops after 4
        evaluate_model(_config(tiny_teacher, data_dir, out, benchmarks=("humaneval", "mbpp")),
                       engine=CountingEngine(engine, stop_after=4))
    assert step_progress("eval", out) == "tasks answered: humaneval 5/5, mbpp 4/5"

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"layout": 2, "options": {"max_steps": 300}}))
    assert step_progress("train", run) == "step 0/300"
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"split": "eval", "step": 0}, {"split": "train", "step": 10}, {"split": "train", "step": 20})))
    assert step_progress("train", run) == "step 20/300"
