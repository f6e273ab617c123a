"""`akd data verified-answers`: the MBPP-train answers that passed, as a training dataset."""
import json
import os

import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval_folders import WRONG_ANSWER, canned_eval, reference_answer  # noqa: E402
from pipeline.cli import main  # noqa: E402
from stages.evaluate import EvaluationError  # noqa: E402
from stages.evaluate.verified import VerifiedAnswersConfig, verified_answers  # noqa: E402

ANSWERS = [lambda t: (reference_answer(t), "stop"),  # passes: kept
           lambda t: (WRONG_ANSWER, "stop"),  # fails its asserts
           lambda t: (reference_answer(t), "length"),  # passes, but its text was cut
           lambda t: (reference_answer(t), "stop")]  # passes: kept


@pytest.fixture(scope="module")
def train_eval(tiny_teacher, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_eval")
    summary = canned_eval(out, tiny_teacher, data_dir, "mbpp", "train", ANSWERS)
    assert summary["benchmarks"]["mbpp"]["pass@1"] == 0.75
    return out


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_keeps_passing_uncut_answers_with_the_students_prompt(train_eval, tmp_path):
    out = tmp_path / "mbpp_train.jsonl"
    report = verified_answers(train_eval, VerifiedAnswersConfig(out=str(out)))
    rows = _rows(out)
    assert [r["task_id"] for r in rows] == ["Mbpp/601", "Mbpp/604"]
    generations = _rows(train_eval / "mbpp" / "generations.jsonl")
    first = rows[0]
    # The instruction is exactly the user turn akd eval asked (and a plain-template student sees).
    assert first["instruction"] == generations[0]["prompt"]["messages"][0]["content"]
    assert first["instruction"].startswith("Write a function")
    assert "\nYour code should pass these tests:\n\n```python\nassert " in first["instruction"]
    assert first["input"] == ""
    assert first["output"] == generations[0]["samples"][0]["text"]  # the raw answer, not the code
    assert first["output"].startswith("Here is the function:\n```python\n")
    assert report["kept"] == 2 and report["n_tasks"] == 4 and report["split"] == "train"
    assert report["left_out"] == {"length_cut": 1, "not_passed": 1}
    assert json.loads((tmp_path / "mbpp_train.meta.json").read_text()) == report

    with_cut = verified_answers(train_eval, VerifiedAnswersConfig(out=str(out), keep_length_cut=True))
    assert [r["task_id"] for r in _rows(out)] == ["Mbpp/601", "Mbpp/603", "Mbpp/604"]
    assert with_cut["left_out"] == {"not_passed": 1}


def test_the_file_feeds_teacher_cache_score_mode(train_eval, tiny_teacher, tmp_path):
    from cache_schema import CacheReader
    from stages.teacher import TeacherCacheConfig, build_teacher_cache
    from transformers import AutoTokenizer

    out = tmp_path / "verified.jsonl"
    verified_answers(train_eval, VerifiedAnswersConfig(out=str(out)))
    config = TeacherCacheConfig.from_options(dict(
        model=str(tiny_teacher), dataset=str(out), out_dir=str(tmp_path / "c"), backend="hf",
        responses_from="output", k=4, max_new_tokens=512, max_model_len=1024, progress=False,
        dtype="float32", teacher_template="plain"))
    build_teacher_cache(config)
    cached = list(CacheReader(tmp_path / "c").iter_examples())
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    assert len(cached) == 2
    for record, row in zip(cached, _rows(out)):
        assert record.finish_reason != "length"  # scored whole
        assert tokenizer.decode(record.response_ids.tolist()).startswith(row["output"].strip()[:40])


def test_command_prints_the_count_and_refuses_test_split_answers(train_eval, tiny_teacher,
                                                                 data_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "v.jsonl"
    result = runner.invoke(main, ["data", "verified-answers", str(train_eval), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 of 4 mbpp train tasks kept (left out: 1 length_cut, 1 not_passed)" in result.output

    test_eval = tmp_path / "test_eval"
    canned_eval(test_eval, tiny_teacher, data_dir, "mbpp", "test", ANSWERS[:1])
    result = runner.invoke(main, ["data", "verified-answers", str(test_eval), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: EvaluationError: {test_eval}/mbpp/generation.json: split 'test'; training answers "
        "must come from the train split (akd eval --split train), never from tasks a model is "
        "scored on"]

    result = runner.invoke(main, ["data", "verified-answers", str(tmp_path / "nowhere"), "--out", str(out)])
    assert result.exit_code == 1 and "no such evaluation folder" in result.output


def test_a_changed_prompt_is_refused(train_eval, tmp_path):
    changed = tmp_path / "changed"
    (changed / "mbpp").mkdir(parents=True)
    for name in ("generation.json", "results.jsonl"):
        (changed / "mbpp" / name).write_text((train_eval / "mbpp" / name).read_text())
    records = _rows(train_eval / "mbpp" / "generations.jsonl")
    records[1]["prompt"]["messages"][0]["content"] += " (reworded)"
    (changed / "mbpp" / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(EvaluationError, match=r"generations.jsonl line 2: the prompt saved for "
                                              r"Mbpp/602 is not the instruct prompt"):
        verified_answers(changed, VerifiedAnswersConfig(out=str(tmp_path / "x.jsonl")))
