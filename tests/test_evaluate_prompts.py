"""Benchmark files, splits and the exact prompt wording (the prompts of the first measured pass@1 figures)."""
import shutil

import pytest

from stages.evaluate.datasets import load_tasks, mbpp_shots
from stages.evaluate.errors import EvaluationError
from stages.evaluate.prompts import HUMANEVAL_STOPS, MBPP_STOPS, build_prompt


def test_task_counts_and_splits(data_dir):
    assert len(load_tasks("humaneval", data_dir=data_dir)) == 164
    test = load_tasks("mbpp", data_dir=data_dir)
    assert len(test) == 500 and test[0].task_id == "Mbpp/11" and test[-1].task_id == "Mbpp/510"
    assert len(load_tasks("mbpp", data_dir=data_dir, split="validation")) == 90
    assert len(load_tasks("mbpp", data_dir=data_dir, split="train")) == 374
    selection = [t.task_id for t in load_tasks("mbpp", data_dir=data_dir, split="selection")]
    assert len(selection) == 100 and selection[9] == "Mbpp/10" and selection[10] == "Mbpp/511"
    assert len(load_tasks("mbpp_sanitized", data_dir=data_dir)) == 257
    assert [t.task_id for t in load_tasks("humaneval", data_dir=data_dir, limit=3)] == [
        "HumanEval/0", "HumanEval/1", "HumanEval/2"]


def test_mbpp_setup_code_runs_after_the_solution(data_dir):
    task = next(t for t in load_tasks("mbpp", data_dir=data_dir) if t.task_id == "Mbpp/367")
    program = task.program(task.reference)
    assert program.index("class Node") < program.index("root = Node(1)")
    assert "\r" not in task.reference


def test_bad_input_is_named(data_dir, tmp_path):
    with pytest.raises(EvaluationError, match="unknown benchmark"):
        load_tasks("apps", data_dir=data_dir)
    with pytest.raises(EvaluationError, match="split"):
        load_tasks("mbpp", data_dir=data_dir, split="dev")
    with pytest.raises(EvaluationError, match="missing"):
        load_tasks("humaneval", data_dir=tmp_path)
    shutil.copy(data_dir / "mbpp.jsonl", tmp_path / "mbpp.jsonl")
    with open(tmp_path / "mbpp.jsonl", "a") as f:
        f.write("\n")
    with pytest.raises(EvaluationError, match="sha256"):
        load_tasks("mbpp", data_dir=tmp_path)


def test_instruct_prompts_match_design_wording(data_dir):
    he = load_tasks("humaneval", data_dir=data_dir, limit=1)[0]
    prompt = build_prompt(he, "instruct")
    assert prompt.messages == ({"role": "user", "content":
                                "Complete the following Python function:\n```python\n"
                                + he.prompt + "\n```"},)
    assert prompt.stops == ()
    mbpp = load_tasks("mbpp", data_dir=data_dir, limit=1)[0]
    content = build_prompt(mbpp, "instruct").messages[0]["content"]
    assert content == (mbpp.prompt + "\nYour code should pass these tests:\n\n```python\n"
                       + "\n".join(mbpp.test_list) + "\n```")


def test_completion_prompts(data_dir):
    he = load_tasks("humaneval", data_dir=data_dir, limit=1)[0]
    assert build_prompt(he, "completion").text == he.prompt
    assert build_prompt(he, "completion").stops == HUMANEVAL_STOPS
    mbpp = load_tasks("mbpp", data_dir=data_dir, limit=1)[0]
    shots = mbpp_shots(data_dir)
    assert [s.task_id for s in shots] == ["Mbpp/2", "Mbpp/3", "Mbpp/4"]
    prompt = build_prompt(mbpp, "completion", shots)
    assert prompt.stops == MBPP_STOPS
    assert prompt.text.count("You are an expert Python programmer, and here is your task:") == 4
    assert prompt.text.count("[DONE]") == 3
    assert prompt.text.endswith(f"{mbpp.test_list[-1]}\n[BEGIN]\n")
    assert shots[0].reference.strip() in prompt.text
    with pytest.raises(EvaluationError, match="few-shot"):
        build_prompt(mbpp, "completion")
    with pytest.raises(EvaluationError, match="mode"):
        build_prompt(mbpp, "chat")


def test_instruct_prompt_through_a_teacher_template(data_dir):
    from inference.templates import get_template

    he = load_tasks("humaneval", data_dir=data_dir, limit=1)[0]
    words = build_prompt(he, "instruct").messages[0]["content"]
    assert build_prompt(he, "instruct", template=get_template("plain")).messages == (
        {"role": "user", "content": words},)
    enhanced = get_template("enhanced")
    messages = build_prompt(he, "instruct", template=enhanced).messages
    assert messages == ({"role": "system", "content": enhanced.system},
                        {"role": "user", "content": words})
    wrapped = build_prompt(he, "instruct", template=get_template("enhanced_user")).messages
    assert len(wrapped) == 1 and wrapped[0]["content"].endswith("Task:\n" + words)
    with pytest.raises(EvaluationError, match="instruct mode only"):
        build_prompt(he, "completion", template=enhanced)
