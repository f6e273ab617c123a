"""From a model's raw answer to the solution code a task's tests run against.

Instruct answers: the first ```python block, else the first fenced block of any kind, else
the whole text; an answer cut by the token limit inside a block keeps what it has (the
fence rules live in inference/answer_text.py, shared with the teacher's summary).
HumanEval instruct: a solution that defines the entry point is used as is, after the part
of the prompt that precedes the entry point (its imports and helper functions, which the
answer may rely on and may redefine); one that does not (a bare body, say) continues the
prompt. Completion answers: the text before the first stop string.
"""
from __future__ import annotations

import ast
import re

from inference.answer_text import cut_at_stop_string, python_block
from stages.evaluate.datasets import Task


def extract_code(answer: str) -> str:
    """The answer's Python block (answer_text.py's rules), else the whole answer."""
    code = python_block(answer)
    return answer if code is None else code


def defines_function(code: str, name: str) -> bool:
    """Whether `code` defines `name` at module level (a regex fallback when it does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        pattern = rf"^(async\s+)?def\s+{re.escape(name)}\s*\("
        return re.search(pattern, code, re.MULTILINE) is not None
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
               for node in tree.body)


def prompt_preamble(task: Task) -> str:
    """The HumanEval prompt up to its entry point's `def` line: imports and helpers."""
    match = re.search(rf"^def\s+{re.escape(task.entry_point)}\s*\(", task.prompt, re.MULTILINE)
    return task.prompt[:match.start()] if match else ""


def solution_from_answer(task: Task, answer: str, mode: str, stops: tuple[str, ...] = ()) -> str:
    """The solution code for `task` from a raw model answer under prompt `mode`."""
    if mode == "completion":
        body, _ = cut_at_stop_string(answer, stops)  # engines cut already; this makes it certain
        return task.prompt + body if task.benchmark == "humaneval" else body
    code = extract_code(answer)
    if task.benchmark != "humaneval":
        return code
    if defines_function(code, task.entry_point):
        return prompt_preamble(task) + code
    return task.prompt + code
