"""Small teacher caches for the distillation tests, written with the real CacheWriter.

`teacher_cache` runs a tiny HF teacher itself (greedy answers, then one forward pass over
prompt + answer for the full log-softmax at each answer position): the trainer must see
that teacher's distributions exactly where its own logits sit. `random_cache` writes
random records fast, for the data pipeline's tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cache_schema import CachedExample, CacheWriter, tokenizer_fingerprint, tokenizer_size

INSTRUCTIONS = [
    "Write a Python function that reverses a string.",
    "Create a list of the first ten square numbers and print it.",
    "def add(a, b):",
    "class Stack:",
    "for i in range(10):",
    "import os\nimport sys",
    "You are an expert programmer. Answer with one complete, runnable solution.",
    "x = [n for n in range(5) if n % 2 == 0]",
]


def identity(tokenizer, teacher: str = "tiny-teacher") -> dict:
    return {"teacher": {"model": teacher, "revision": "test"},
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
            "templates": {"teacher": "plain", "student": "plain"},
            "sampling": {"temperature": 0.0, "max_new_tokens": 0}, "dataset": {"path": "tests"}}


# The compact encoding on a grid 100x finer than the default: <= 1e-4 nats where p >= 1e-3
# (60,428 codes of the 65,536 that fit), for tests that compare with full-vocabulary references.
FINE_GRID_ENCODING = "compact-v1:fine=0.0002,coarse=0.0004,deep=0.01"


def teacher_cache(teacher_dir, out_dir, *, examples: int = 24, max_new_tokens: int = 10,
                  k: int | None = None, rows_per_shard: int = 4, teacher_name: str = "tiny-teacher",
                  encoding: str | None = None) -> Path:
    """k=None stores the full vocabulary (the top-k + tail form with an empty tail);
    encoding=None takes the writer's default."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    vocab = tokenizer_size(tokenizer)
    k = k or vocab
    extra = {"encoding": encoding} if encoding else {}
    writer = CacheWriter.open(out_dir, identity(tokenizer, teacher_name), k=k, vocab_size=vocab,
                              rows_per_shard=rows_per_shard, **extra)
    for i in range(examples):
        text = f"{INSTRUCTIONS[i % len(INSTRUCTIONS)]} (task {i})"
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
        prompt = torch.tensor([list(prompt)])
        with torch.no_grad():
            response, finish = _greedy(model, prompt[0], max_new_tokens, tokenizer.eos_token_id)
            full = torch.cat([prompt[0], response])[None]
            logits = model(full).logits[0, prompt.shape[1] - 1 : full.shape[1] - 1, :vocab]
            logprobs = torch.log_softmax(logits.double(), dim=-1)
            top_lp, top_ids = logprobs.topk(k, dim=-1)
        writer.add(CachedExample(example_id=f"tiny:{i}:0", prompt_ids=prompt[0].tolist(),
                                 response_ids=response.tolist(), topk_ids=top_ids.numpy(),
                                 topk_logprobs=top_lp.float().numpy(), finish_reason=finish,
                                 sampled_logprobs=logprobs.gather(1, response[:, None])[:, 0].float().numpy()))
    writer.close()
    return Path(out_dir)


def _greedy(model, prompt, max_new_tokens: int, eos: int):
    """Greedy answer ending with eos ("stop") or cut at max_new_tokens ("length")."""
    import torch

    tokens = prompt.clone()
    for _ in range(max_new_tokens):
        next_id = model(tokens[None]).logits[0, -1].argmax()
        tokens = torch.cat([tokens, next_id[None]])
        if int(next_id) == eos:
            return tokens[len(prompt):], "stop"
    return tokens[len(prompt):], "length"


def random_cache(out_dir, *, examples: int = 40, vocab: int = 384, k: int = 4, rows_per_shard: int = 5,
                 fingerprint: str = "sha256:random", seed: int = 0, length_every: int = 0,
                 prompt_len: tuple[int, int] = (2, 12), response_len: tuple[int, int] = (1, 20),
                 prefix: str = "rand") -> Path:
    """Random but valid records (ids `<prefix>:<i>:0`); every `length_every`-th one is marked cut
    by the token limit."""
    rng = np.random.default_rng(seed)
    ident = {"teacher": {"model": "random", "revision": "test"}, "tokenizer_fingerprint": fingerprint,
             "templates": {}, "sampling": {}, "dataset": {"seed": seed}}
    writer = CacheWriter.open(out_dir, ident, k=k, vocab_size=vocab, rows_per_shard=rows_per_shard)
    for i in range(examples):
        n = int(rng.integers(*response_len, endpoint=True))
        logits = rng.normal(size=(n, vocab)) * 3
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        order = np.argsort(-logprobs, axis=1)[:, :k]
        writer.add(CachedExample(
            example_id=f"{prefix}:{i}:0", prompt_ids=list(rng.integers(0, vocab, int(rng.integers(*prompt_len)))),
            response_ids=list(order[:, 0]), topk_ids=order,
            topk_logprobs=np.take_along_axis(logprobs, order, axis=1).astype(np.float32),
            finish_reason="length" if length_every and i % length_every == 0 else "stop"))
    writer.close()
    return Path(out_dir)


def student_cache_options(student) -> dict:
    """random_cache options whose records the tiny student can train on: its vocabulary and
    tokenizer fingerprint, short responses, small shards."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student)
    return dict(vocab=len(tokenizer), fingerprint=tokenizer_fingerprint(tokenizer), rows_per_shard=5,
                response_len=(3, 16))
