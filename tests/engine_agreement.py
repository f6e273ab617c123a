"""Shared check for pruned models: vLLM must load the folder and decode what HF decodes."""

from __future__ import annotations

from pathlib import Path

PROMPTS = ("Write a Python function that reverses a string.", "class Stack")


def assert_vllm_agrees_with_hf(folder: Path, max_new_tokens: int = 16) -> None:
    """Greedy tokens from both engines agree on two short prompts (float32, same chat template)."""
    from inference import SamplingSpec, load_engine, render_prompt

    vllm = load_engine(str(folder), backend="vllm", max_model_len=256, dtype="float32", max_logprobs=2)
    hf = load_engine(str(folder), backend="hf", max_model_len=256, dtype="float32", max_logprobs=2)
    try:
        prompts = [render_prompt(hf.tokenizer, [{"role": "user", "content": text}]) for text in PROMPTS]
        spec = SamplingSpec(max_new_tokens=max_new_tokens)
        for (v,), (h,) in zip(vllm.generate(prompts, spec), hf.generate(prompts, spec)):
            assert len(v.token_ids) > 0 and v.token_ids == h.token_ids
    finally:
        vllm.close()
        hf.close()
