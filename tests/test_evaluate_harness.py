"""A solution cannot fake a pass by returning an object that equals anything (issue 10 §4):
the functions the tests call must return plain data, checked in the program before the tests
compare it, with references taken before the solution ran."""
import collections
import re

import pytest

from stages.evaluate import harness
from stages.evaluate.datasets import called_names, load_tasks
from stages.evaluate.sandbox import Limits, Sandbox

FAKE = ("class T(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n"
        "class S(str):\n    __eq__ = lambda self, other: True\n    __hash__ = str.__hash__\n")

# HumanEval/0 (has_close_elements, expects a bool) and Mbpp/11 (remove_Occ, expects a str)
FAKES = {
    "int subclass": ("def has_close_elements(numbers, threshold):\n    return T(0)\n",
                     "def remove_Occ(s, ch):\n    return S('')\n"),
    "class as the function": (
        "class has_close_elements:\n    def __init__(self, *args):\n        pass\n"
        "    def __eq__(self, other):\n        return True\n",
        "class remove_Occ:\n    def __init__(self, *args):\n        pass\n"
        "    def __eq__(self, other):\n        return True\n"),
    "builtins and harness names patched first": (
        "import builtins\nbuiltins.type = lambda *a: int\nbuiltins.id = lambda o: 0\n"
        "builtins.isinstance = lambda *a: True\n_akd_checker = _akd_run = None\n"
        "def has_close_elements(numbers, threshold):\n    return T(0)\n",
        "import builtins\nbuiltins.type = lambda *a: str\nbuiltins.callable = lambda f: False\n"
        "def remove_Occ(s, ch):\n    return S('')\n"),
    "builtins patched during the call": (
        "def has_close_elements(numbers, threshold):\n    import builtins\n"
        "    builtins.type = lambda *a: bool\n    builtins.set = list\n    return T(0)\n",
        "def remove_Occ(s, ch):\n    import builtins\n    builtins.id = lambda o: 0\n"
        "    return S('')\n"),
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return Sandbox(Limits(timeout_s=10), tmp_root=tmp_path_factory.mktemp("harness_root"),
                   trust_model_code=True)


@pytest.fixture(scope="module")
def tasks(data_dir):
    return (load_tasks("humaneval", data_dir=data_dir, limit=1)[0],
            load_tasks("mbpp", data_dir=data_dir, limit=1)[0])


@pytest.mark.parametrize("name", list(FAKES))
def test_an_object_equal_to_anything_fails(sandbox, tasks, name):
    humaneval, mbpp = tasks
    assert (humaneval.entry_point, mbpp.task_id) == ("has_close_elements", "Mbpp/11")
    programs = [task.program(FAKE + fake) for task, fake in zip(tasks, FAKES[name])]
    for result in sandbox.run_many(programs):
        assert result.status == "failed", result
        assert "akd-harness:" in result.message and "returned a value of type" in result.message


def test_a_patched_counter_fails_and_a_plain_one_passes(sandbox, data_dir):
    task = load_tasks("mbpp", data_dir=data_dir, split="test")[88 - 11]  # freq_count: a dict
    assert task.task_id == "Mbpp/88"
    patched = ("import collections\ncollections.Counter.__eq__ = lambda self, other: True\n"
               "def freq_count(items):\n    return collections.Counter()\n")
    honest = "import collections\ndef freq_count(items):\n    return collections.Counter(items)\n"
    bad, good = sandbox.run_many([task.program(patched), task.program(honest)])
    assert bad.status == "failed" and "Counter, after its code was changed" in bad.message
    assert good.status == "passed", good


def test_the_solutions_own_calls_are_not_wrapped(sandbox, data_dir):
    """Recursion 900 deep passes: the wrapper adds no frame to the solution's own calls."""
    task = load_tasks("mbpp", data_dir=data_dir, limit=1)[0]
    solution = ("def remove_Occ(s, ch, depth=900):\n    if depth:\n"
                "        return remove_Occ(s, ch, depth - 1)\n"
                "    s = s.replace(ch, '', 1)\n    i = s.rfind(ch)\n"
                "    return s if i < 0 else s[:i] + s[i + 1:]\n")
    assert sandbox.run(task.program(solution)).status == "passed"


def test_called_names_skip_the_inputs_of_the_function_under_test():
    tests = ["assert max_chain_length([Pair(5, 24), Pair(15, 25)], 4) == 3",
             "assert set(f(x)) == {1}", "assert math.isclose(g(1), 2.0)", "broken (("]
    assert called_names(*tests) == ("max_chain_length", "set", "f", "g")


class Fake(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [
    None, True, 3, 2.5, 1j, "s", b"b", [1, (2, {3: [4.0]})], {frozenset({1}): {"k": None}},
    collections.Counter("aab"), collections.defaultdict(list, {1: [2]}), re.match("a", "a"),
])
def test_plain_values_pass_the_check(value):
    assert harness._akd_checker()(value) is None


@pytest.mark.parametrize("value, kind", [
    (Fake(1), "Fake"), ([1, (2, {3: [Fake(4)]})], "Fake"), ({Fake(1): 1}, "Fake"),
    (iter([1]), "list_iterator"), ((x for x in ()), "generator"), (map(int, "1"), "map"),
    (collections.OrderedDict(), "OrderedDict"), (collections.defaultdict(lambda: Fake(0)),
                                                 "default_factory"),
])
def test_other_values_are_named(value, kind):
    assert kind in harness._akd_checker()(value)


def test_a_container_holding_itself_is_checked_once():
    loop = [1]
    loop.append(loop)
    assert harness._akd_checker()(loop) is None
