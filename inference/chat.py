"""Prompt rendering shared by the teacher and evaluation stages."""
from __future__ import annotations


def render_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` as the model expects them before its answer.

    Uses the tokenizer's chat template (with the generation prompt) when it has one;
    a base model without a template gets the contents joined by blank lines.
    """
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return [int(i) for i in ids]
    text = "\n\n".join(m["content"] for m in messages)
    return [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]
