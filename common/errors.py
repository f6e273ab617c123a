"""Reading an exception for a one-line message: its first line, and the exceptions behind it."""
from __future__ import annotations

from typing import Iterator


def first_line(err: BaseException) -> str:
    """The message's first line, or the type's name where the message is empty."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def error_chain(err: BaseException | None) -> Iterator[BaseException]:
    """`err`, then what caused it (or was being handled), each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__
