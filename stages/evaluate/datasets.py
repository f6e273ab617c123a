"""HumanEval and MBPP tasks, read from the checked files akd ships in data/ (see its SOURCES.md).

A Task knows how to turn a solution (model code, or the reference) into the program the
sandbox runs: solution, then the task's tests, in the order the benchmark's authors use, under
harness.py, which fails a function the tests call when it returns something other than plain data.
"""
from __future__ import annotations

import ast
import builtins
import gzip
import hashlib
import json
from importlib import resources
from dataclasses import dataclass
from pathlib import Path

from stages.evaluate import harness
from stages.evaluate.errors import EvaluationError

# The repository's data/ folder, installed as the package `akd_data` (editable or not).
DEFAULT_DATA_DIR = Path(str(resources.files("akd_data")))
BENCHMARKS = ("humaneval", "mbpp", "mbpp_sanitized")

# sha256 of the files as collected (SOURCES.md): a changed file must not pass silently.
CHECKSUMS = {
    "HumanEval.jsonl.gz": "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    "mbpp.jsonl": "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
    "sanitized-mbpp.json": "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9",
}
# MBPP's standard split by task id (Austin et al. 2021, upstream README).
MBPP_SPLITS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601),
               "train": range(601, 975),
               # outside the test split: where choices (e.g. a teacher template) are made
               "selection": (*range(1, 11), *range(511, 601))}
MBPP_SHOT_IDS = (2, 3, 4)  # the paper's 3-shot examples
HARNESS = Path(harness.__file__).read_text()
BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass(frozen=True)
class Task:
    benchmark: str
    task_id: str  # "HumanEval/0", "Mbpp/11"
    prompt: str  # HumanEval: signature + docstring; MBPP: the problem text
    reference: str  # the reference solution, as a program prefix
    tests: str  # code that checks a solution, run after it
    entry_point: str | None = None  # HumanEval's function under test
    test_list: tuple[str, ...] = ()  # MBPP's asserts, shown in the prompt
    test_imports: tuple[str, ...] = ()  # sanitized MBPP: imports the tests need
    checked: tuple[str, ...] = ()  # names the tests call: their return values must be plain data

    def program(self, solution: str) -> str:
        """The program whose clean exit means the solution passed."""
        head = "".join(f"{line}\n" for line in self.test_imports)
        solution, tests = f"{head}{solution}\n", f"{self.tests}\n"
        return f"{HARNESS}\n\n_akd_run({solution!r}, {tests!r}, {self.checked!r})\n"


def called_names(*sources: str) -> tuple[str, ...]:
    """The plain names the tests call (`f(...)`, not `m.f(...)`) and look at the result of, first
    appearance first. Calls inside the arguments of a call to a name that is not a builtin are
    inputs, not results (`f([Pair(1, 2)])`: f's result is checked, Pair builds its input). A
    source that does not parse contributes none (running it fails anyway)."""
    names = {}
    for source in sources:
        try:
            pending = [ast.parse(source)]
        except SyntaxError:
            continue
        while pending:
            node = pending.pop()
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                names.setdefault(node.func.id, None)
                if node.func.id not in BUILTIN_NAMES:
                    continue
            pending.extend(reversed(list(ast.iter_child_nodes(node))))
    return tuple(names)


def load_tasks(benchmark: str, *, data_dir: Path | None = None, split: str = "test",
               limit: int | None = None) -> list[Task]:
    """The benchmark's tasks in id order; `limit` keeps the first N (quick runs)."""
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    if benchmark == "humaneval":
        if split != "test":
            raise EvaluationError(f"HumanEval has only a test split, not {split!r}")
        tasks = _humaneval(data_dir)
    elif benchmark in ("mbpp", "mbpp_sanitized"):
        if split not in MBPP_SPLITS:
            raise EvaluationError(f"unknown MBPP split {split!r}; choose one of "
                                  f"{', '.join(MBPP_SPLITS)}")
        rows = _mbpp_sanitized(data_dir) if benchmark == "mbpp_sanitized" else _mbpp(data_dir)
        tasks = [t for n, t in rows.items() if n in MBPP_SPLITS[split]]
    else:
        raise EvaluationError(f"unknown benchmark {benchmark!r}; choose one of "
                              f"{', '.join(BENCHMARKS)}")
    if limit is not None:
        if limit < 1:
            raise EvaluationError(f"limit must be >= 1, got {limit}")
        tasks = tasks[:limit]
    return tasks


def mbpp_shots(data_dir: Path | None = None) -> list[Task]:
    """MBPP tasks 2, 3 and 4: the few-shot examples of the completion prompt."""
    rows = _mbpp(Path(data_dir) if data_dir else DEFAULT_DATA_DIR)
    return [rows[n] for n in MBPP_SHOT_IDS]


def _read_checked(path: Path) -> bytes:
    if not path.exists():
        raise EvaluationError(f"{path}: benchmark file missing (see data/SOURCES.md)")
    data = path.read_bytes()
    expected = CHECKSUMS.get(path.name)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise EvaluationError(f"{path}: sha256 differs from SOURCES.md; the file was changed")
    return data


def _humaneval(data_dir: Path) -> list[Task]:
    text = gzip.decompress(_read_checked(data_dir / "HumanEval.jsonl.gz")).decode()
    tasks = []
    for row in map(json.loads, text.splitlines()):
        tasks.append(Task(
            benchmark="humaneval", task_id=row["task_id"], prompt=row["prompt"],
            reference=row["prompt"] + row["canonical_solution"], entry_point=row["entry_point"],
            tests=f"{row['test']}\n\ncheck({row['entry_point']})",
            checked=(row["entry_point"], *called_names(row["test"]))))
    return tasks


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _mbpp(data_dir: Path) -> dict[int, Task]:
    rows = map(json.loads, _read_checked(data_dir / "mbpp.jsonl").decode().splitlines())
    tasks = {}
    for row in rows:
        # test_setup_code uses names the solution defines (tasks 367, 927): after the code.
        setup = _crlf(row["test_setup_code"])
        tests = "\n".join(row["test_list"])
        tasks[row["task_id"]] = Task(
            benchmark="mbpp", task_id=f"Mbpp/{row['task_id']}", prompt=row["text"],
            reference=_crlf(row["code"]), tests=f"{setup}\n{tests}" if setup else tests,
            test_list=tuple(row["test_list"]), checked=called_names(*row["test_list"]))
    return tasks


def _mbpp_sanitized(data_dir: Path) -> dict[int, Task]:
    rows = json.loads(_read_checked(data_dir / "sanitized-mbpp.json"))
    return {row["task_id"]: Task(
        benchmark="mbpp_sanitized", task_id=f"Mbpp/{row['task_id']}", prompt=row["prompt"],
        reference=_crlf(row["code"]), tests="\n".join(row["test_list"]),
        test_list=tuple(row["test_list"]), test_imports=tuple(row["test_imports"]),
        checked=called_names(*row["test_list"]))
        for row in rows}
