"""Reading a model's answer text: its fenced code blocks and the part before a stop string.

One set of rules for every reader (the evaluator's extraction, the teacher's parse share,
the engines' stop handling), so they cannot disagree about what an answer holds. A fence
opens at the start of a line (indentation allowed), with an optional language tag; it
closes on a line of its own. Backticks inside a line (`s = "```"`, prose that mentions
fences) open or close nothing. A block cut by the token limit runs to the end of the text.
"""
from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n", re.MULTILINE)
_CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
PYTHON_TAGS = frozenset({"python", "python3", "py", "py3"})


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, lower-cased; body) of each fenced block, in order; an unclosed last block
    runs to the end of the text."""
    blocks, pos = [], 0
    while (opening := _FENCE.search(text, pos)) is not None:
        closing = _CLOSE.search(text, opening.end())
        end = closing.start() if closing else len(text)
        blocks.append((opening.group(1).lower(), text[opening.end():end]))
        pos = closing.end() if closing else len(text)
    return blocks


def python_block(text: str) -> str | None:
    """The answer's code: the first block tagged as Python, else the first block; None: no block."""
    blocks = code_blocks(text)
    for tag, body in blocks:
        if tag in PYTHON_TAGS:
            return body
    return blocks[0][1] if blocks else None


def cut_at_stop_string(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """(text before the earliest stop string, whether one was found)."""
    cut = min((p for p in (text.find(s) for s in stops) if p >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)
