"""The teacher's parse share and the evaluator read an answer's code block by the same rules."""
import ast

import pytest

from inference.answer_text import code_blocks, python_block
from stages.evaluate.extract import extract_code
from stages.teacher.summary import python_block_parses

# (answer, whether the block the evaluator would run parses)
TRICKY = {
    "indented fence in a list item": ("1. Write it:\n   ```python\n   x = 1\n   ```\n", False),
    "unterminated block": ("```py\ndef f():\n    return 1\n", True),
    "language tag Python3": ("```Python3\nprint('ok')\n```\n", True),
    "tag py after a shell block": ("```bash\npip install numpy\n```\n```py\nimport numpy\n```\n", True),
    "backticks inside the code": ('```python\nFENCE = "```"\nprint(FENCE)\n```\n', True),
    "prose that mentions fences": ("I'll put it in a ``` block.\nHere it is:\n```python\nx = 1\n```\n", True),
    "no block at all": ("x = 1", False),
}


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


@pytest.mark.parametrize("name", TRICKY)
def test_teacher_summary_agrees_with_the_evaluator(name):
    answer, parses = TRICKY[name]
    assert python_block_parses(answer) is parses
    if python_block(answer) is not None:  # with a block, the verdict is on the code the evaluator runs
        assert python_block_parses(answer) is _parses(extract_code(answer))


def test_fences_open_and_close_only_on_their_own_line():
    assert code_blocks('```python\nFENCE = "```"\n```\n') == [("python", 'FENCE = "```"\n')]
    assert code_blocks("  ```Python3 title\nx\n  ```\n```\ny") == [("python3", "x\n"), ("", "y")]
    assert code_blocks("inline ``` only") == []
