"""The reference solutions pass, and wrong ones fail, through the path model answers take:
Task.program -> Sandbox.run_many."""
import pytest

from stages.evaluate.datasets import load_tasks
from stages.evaluate.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(trust_model_code=True)


def _statuses(sandbox, tasks, solutions):
    results = sandbox.run_many([t.program(s) for t, s in zip(tasks, solutions)])
    return {t.task_id: r.status for t, r in zip(tasks, results)}


def _wrong_humaneval(task):
    return task.prompt + "    return None\n"


def test_a_few_references_pass_and_wrong_answers_fail(sandbox, data_dir):
    he = load_tasks("humaneval", data_dir=data_dir, limit=3)
    mbpp = load_tasks("mbpp", data_dir=data_dir, limit=3)
    assert set(_statuses(sandbox, he + mbpp, [t.reference for t in he + mbpp]).values()) == {
        "passed"}
    wrong = [_wrong_humaneval(t) for t in he] + [mbpp[1].reference, mbpp[2].reference,
                                                  mbpp[0].reference]
    assert set(_statuses(sandbox, he + mbpp, wrong).values()) == {"failed"}


@pytest.mark.slow
def test_every_humaneval_reference_passes_and_a_stub_fails(sandbox, data_dir):
    tasks = load_tasks("humaneval", data_dir=data_dir)
    passed = _statuses(sandbox, tasks, [t.reference for t in tasks])
    assert [k for k, v in passed.items() if v != "passed"] == []
    assert len(passed) == 164
    stubs = _statuses(sandbox, tasks, [_wrong_humaneval(t) for t in tasks])
    assert [k for k, v in stubs.items() if v == "passed"] == []


@pytest.mark.slow
def test_every_mbpp_test_reference_passes_and_a_neighbours_fails(sandbox, data_dir):
    tasks = load_tasks("mbpp", data_dir=data_dir)
    passed = _statuses(sandbox, tasks, [t.reference for t in tasks])
    assert [k for k, v in passed.items() if v != "passed"] == []
    assert len(passed) == 500
    sample = tasks[::10]
    swapped = _statuses(sandbox, sample, [t.reference for t in sample[1:] + sample[:1]])
    assert [k for k, v in swapped.items() if v == "passed"] == []
