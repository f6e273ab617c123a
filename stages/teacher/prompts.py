"""Rows become token-id prompts: the teacher's to generate from, the student's to store."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .rows import SKIP_TOO_LONG, SourceRow


@dataclass(frozen=True)
class PromptPair:
    row_index: int
    teacher_ids: list[int]
    student_ids: list[int]


def build_prompts(rows, tokenizer, student_tokenizer, teacher_template, student_template,
                  max_prompt_len: int, skipped: Counter) -> list[PromptPair]:
    """Render the teacher prompt with the teacher's tokenizer and the student prompt with the
    student's (same token ids, checked; their chat templates may differ). A teacher prompt
    over `max_prompt_len` tokens would make vLLM fail the whole batch, so it is skipped."""
    pairs = []
    for row in rows:
        row: SourceRow
        teacher_ids = teacher_template.render(tokenizer, row.instruction, row.input_text)
        if len(teacher_ids) > max_prompt_len:
            skipped[SKIP_TOO_LONG] += 1
            continue
        student_ids = (teacher_ids if (student_template, student_tokenizer) == (teacher_template, tokenizer)
                       else student_template.render(student_tokenizer, row.instruction, row.input_text))
        pairs.append(PromptPair(row.row_index, teacher_ids, student_ids))
    return pairs
