"""Code extraction and stop handling on realistic (Qwen2.5-Coder-Instruct style) answers."""
from stages.evaluate.datasets import Task
from inference.answer_text import code_blocks, cut_at_stop_string
from stages.evaluate.extract import defines_function, extract_code, prompt_preamble, solution_from_answer
from stages.evaluate.prompts import HUMANEVAL_STOPS, MBPP_STOPS

HE_PROMPT = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """ Detect if the balance ever falls below zero.
    >>> below_zero([1, 2, -4, 5])
    True
    """
'''
HE_TASK = Task(benchmark="humaneval", task_id="HumanEval/3", prompt=HE_PROMPT, reference="",
               tests="def check(candidate):\n    assert candidate([1, -2])\n\ncheck(below_zero)",
               entry_point="below_zero")

HELPER_PROMPT = '''def encode_shift(s: str):
    return "".join([chr(((ord(ch) + 5 - ord("a")) % 26) + ord("a")) for ch in s])


def decode_shift(s: str):
    """ takes as input string encoded with encode_shift function. Returns decoded string. """
'''
HELPER_TASK = Task(benchmark="humaneval", task_id="HumanEval/50", prompt=HELPER_PROMPT,
                   reference="", tests="", entry_point="decode_shift")

FULL_ANSWER = '''Here's the completed function:

```python
from typing import List


def below_zero(operations: List[int]) -> bool:
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            return True
    return False
```

### Explanation
- We start with a balance of zero and add each operation.
- As soon as the balance drops below zero we return `True`.

```python
print(below_zero([1, 2, -4, 5]))  # True
```
'''

NO_IMPORT_ANSWER = '''```python
def below_zero(operations: List[int]) -> bool:
    return any(sum(operations[:i + 1]) < 0 for i in range(len(operations)))
```'''

BODY_ONLY_ANSWER = '''```python
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            return True
    return False
```'''

SHELL_THEN_PY_ANSWER = '''First install nothing:

```bash
python solution.py
```

```py
def below_zero(operations):
    return min(__import__("itertools").accumulate(operations), default=0) < 0
```
'''

UNTAGGED_ANSWER = '''Sure!
```
def below_zero(operations):
    total = 0
    return any((total := total + op) < 0 for op in operations)
```
That's it.'''

TRUNCATED_ANSWER = '''```python
def below_zero(operations: List[int]) -> bool:
    balance = 0
    for op in operations:
        balance += op'''

PLAIN_CODE_ANSWER = '''def below_zero(operations):
    return False'''

HELPER_ANSWER = '''```python
def decode_shift(s: str):
    return "".join([chr(((ord(ch) - 5 - ord("a")) % 26) + ord("a")) for ch in s])
```'''

MBPP_ANSWER = '''To solve this, we can use a set intersection:

```python
def similar_elements(test_tup1, test_tup2):
    return tuple(set(test_tup1) & set(test_tup2))

# Test cases
assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == {4, 5}
```

This function converts both tuples to sets.'''


def test_first_python_block_wins_over_later_examples():
    code = extract_code(FULL_ANSWER)
    assert code.startswith("from typing import List\n")
    assert "return False" in code and "print(" not in code and "Explanation" not in code


def test_python_tag_preferred_over_earlier_other_language_block():
    assert extract_code(SHELL_THEN_PY_ANSWER).startswith("def below_zero(operations):")


def test_untagged_block_and_no_block():
    assert extract_code(UNTAGGED_ANSWER).startswith("def below_zero(operations):\n")
    assert "That's it" not in extract_code(UNTAGGED_ANSWER)
    assert extract_code(PLAIN_CODE_ANSWER) == PLAIN_CODE_ANSWER


def test_unclosed_block_cut_by_token_limit_keeps_its_code():
    assert extract_code(TRUNCATED_ANSWER).endswith("balance += op")
    assert code_blocks("```python\nx = 1\n") == [("python", "x = 1\n")]


def test_humaneval_answer_defining_entry_point_gets_prompt_imports():
    solution = solution_from_answer(HE_TASK, NO_IMPORT_ANSWER, "instruct")
    assert solution.startswith("from typing import List\n")
    assert solution.count("def below_zero") == 1  # the prompt's stub is not repeated
    namespace = {}
    exec(solution, namespace)
    assert namespace["below_zero"]([1, -2]) is True


def test_humaneval_body_only_answer_continues_the_prompt():
    solution = solution_from_answer(HE_TASK, BODY_ONLY_ANSWER, "instruct")
    assert solution.startswith(HE_PROMPT)
    namespace = {}
    exec(solution, namespace)
    assert namespace["below_zero"]([1, 2, -4]) is True
    assert namespace["below_zero"]([1, 2]) is False


def test_humaneval_helper_functions_of_the_prompt_stay_available():
    assert prompt_preamble(HELPER_TASK).startswith("def encode_shift")
    solution = solution_from_answer(HELPER_TASK, HELPER_ANSWER, "instruct")
    namespace = {}
    exec(solution, namespace)
    assert namespace["decode_shift"](namespace["encode_shift"]("hello")) == "hello"


def test_defines_function_ignores_nested_and_handles_syntax_errors():
    assert defines_function("def f():\n    pass\n", "f")
    assert not defines_function("class A:\n    def f(self):\n        pass\n", "f")
    assert not defines_function("def fx():\n    pass\n", "f")
    assert defines_function("def f(:\n    pass\n", "f")  # broken code: regex fallback


def test_mbpp_instruct_answer_keeps_its_own_asserts():
    code = solution_from_answer(Task("mbpp", "Mbpp/2", "", "", ""), MBPP_ANSWER, "instruct")
    assert code.startswith("def similar_elements") and "This function" not in code


def test_humaneval_completion_stops_at_next_top_level_statement():
    raw = ("    return any(x < 0 for x in operations)\n\n\ndef main():\n    pass\n"
           "\nif __name__ == '__main__':\n    main()\n")
    solution = solution_from_answer(HE_TASK, raw, "completion", HUMANEVAL_STOPS)
    assert solution == HE_PROMPT + "    return any(x < 0 for x in operations)\n\n"
    assert cut_at_stop_string("    return 1\n# test\nprint(f())", HUMANEVAL_STOPS) == ("    return 1", True)
    assert cut_at_stop_string("    x = 1\n    # keep indented comments\n    return x",
                              HUMANEVAL_STOPS) == ("    x = 1\n    # keep indented comments\n    return x", False)


def test_mbpp_completion_stops_at_done():
    raw = ("def f(a, b):\r\n    return a + b\n[DONE]\nYou are an expert Python programmer, "
           "and here is your task: ...")
    solution = solution_from_answer(Task("mbpp", "Mbpp/11", "", "", ""), raw, "completion",
                                    MBPP_STOPS)
    assert solution == "def f(a, b):\r\n    return a + b\n"
