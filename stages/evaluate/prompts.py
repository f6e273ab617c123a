"""What the model is asked, per benchmark and mode, and where its answer is cut.

instruct: one user message through the tokenizer's chat template, worded exactly as the
first measured pass@1 figures used (teacher 70.7% / 53.2%, student 55.5% / 34.0%); the answer's code block is
extracted afterwards (extract.py).
completion: base-model prompting. HumanEval's prompt as is, stopped where a new top-level
statement starts (the Codex paper's stops plus decorators and closing fences, as in the
bigcode harness). MBPP in the paper's 3-shot [BEGIN]/[DONE] form (tasks 2, 3, 4).
An instruct prompt may go through a teacher prompt template (inference/templates.py): the
benchmark's words become the template's {instruction}, so a model can be scored under the
same system message and wrapping that the teacher cache used.
"""
from __future__ import annotations

from dataclasses import dataclass

from stages.evaluate.datasets import Task
from stages.evaluate.errors import EvaluationError

MODES = ("instruct", "completion")

HUMANEVAL_INSTRUCT = "Complete the following Python function:\n```python\n{prompt}\n```"
MBPP_INSTRUCT = "{text}\nYour code should pass these tests:\n\n```python\n{tests}\n```"

HUMANEVAL_STOPS = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")
MBPP_SHOT = ("You are an expert Python programmer, and here is your task: {text} "
             "Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")
MBPP_STOPS = ("[DONE]", "\nYou are an expert Python programmer")


@dataclass(frozen=True)
class Prompt:
    """Either chat messages (instruct) or raw text (completion), plus stop strings."""
    messages: tuple[dict, ...] = ()
    text: str = ""
    stops: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"messages": list(self.messages)} if self.messages else {"text": self.text}


def build_prompt(task: Task, mode: str, shots: list[Task] = (), template=None) -> Prompt:
    """The prompt for `task`; MBPP completion mode needs the few-shot `shots`.

    `template` (an inference.templates.PromptTemplate, instruct mode only) wraps the
    benchmark's words; None asks them as the only user turn, as those figures were measured."""
    if mode not in MODES:
        raise EvaluationError(f"unknown prompt mode {mode!r}; choose one of {', '.join(MODES)}")
    humaneval = task.benchmark == "humaneval"
    if mode == "instruct":
        if humaneval:
            content = HUMANEVAL_INSTRUCT.format(prompt=task.prompt)
        else:
            content = MBPP_INSTRUCT.format(text=task.prompt, tests="\n".join(task.test_list))
        if template is None:
            return Prompt(messages=({"role": "user", "content": content},))
        return Prompt(messages=tuple(template.messages(content)))
    if template is not None:
        raise EvaluationError("prompt templates apply to instruct mode only")
    if humaneval:
        return Prompt(text=task.prompt, stops=HUMANEVAL_STOPS)
    if not shots:
        raise EvaluationError("MBPP completion prompts need the few-shot tasks (mbpp_shots)")
    examples = "".join(_mbpp_shot(s) + f"{s.reference.strip()}\n[DONE]\n" for s in shots)
    return Prompt(text=examples + _mbpp_shot(task), stops=MBPP_STOPS)


def _mbpp_shot(task: Task) -> str:
    return MBPP_SHOT.format(text=task.prompt, tests="\n".join(task.test_list))
