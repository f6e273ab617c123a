"""Where generation ends: the same stop ids for every engine (stop strings: answer_text.py)."""
from __future__ import annotations


def eos_token_ids(tokenizer, generation_config_eos=None, extra: tuple[int, ...] = ()) -> list[int]:
    """The tokenizer's eos, the model's generation-config eos id(s), and `extra`, deduplicated.

    Chat models stop on an end-of-turn token that may only be listed in the generation
    config (Qwen2.5: <|im_end|> and <|endoftext|>); vLLM honours both, so must HF.
    """
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id]
    if isinstance(generation_config_eos, int):
        candidates.append(generation_config_eos)
    elif generation_config_eos:
        candidates.extend(generation_config_eos)
    candidates.extend(extra)
    for i in candidates:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    return ids
