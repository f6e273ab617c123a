"""From a model's raw answer to the solution code a task's tests run against.

Instruct answers: the first ```python block, else the first fenced block of any kind, else
the whole text; an answer cut by the token limit inside a block keeps what it has.
HumanEval instruct: a solution that defines the entry point is used as is, after the part
of the prompt that precedes the entry point (its imports and helper functions, which the
answer may rely on and may redefine); one that does not (a bare body, say) continues the
prompt. Completion answers: the text before the first stop string.
"""
from __future__ import annotations

import ast
import re

from stages.evaluate.datasets import Task

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n", re.MULTILINE)
_CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
_PYTHON_TAGS = {"python", "python3", "py", "py3"}


def cut_at_stops(text: str, stops: tuple[str, ...]) -> str:
    """Text before the earliest stop string (engines cut already; this makes it certain)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of each fenced block, in order; an unclosed last block runs to
    the end of the text."""
    blocks, pos = [], 0
    while (opening := _FENCE.search(text, pos)) is not None:
        closing = _CLOSE.search(text, opening.end())
        end = closing.start() if closing else len(text)
        blocks.append((opening.group(1).lower(), text[opening.end():end]))
        pos = closing.end() if closing else len(text)
    return blocks


def extract_code(answer: str) -> str:
    blocks = code_blocks(answer)
    for tag, body in blocks:
        if tag in _PYTHON_TAGS:
            return body
    return blocks[0][1] if blocks else answer


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
        body = cut_at_stops(answer, stops)
        return task.prompt + body if task.benchmark == "humaneval" else body
    code = extract_code(answer)
    if task.benchmark != "humaneval":
        return code
    if defines_function(code, task.entry_point):
        return prompt_preamble(task) + code
    return task.prompt + code
