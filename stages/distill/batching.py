"""From cache records to padded training batches under a token budget.

Alignment (docs/design.md): in the input `prompt_ids + response_ids`, the logits that predict
response token j sit at index `len(prompt_ids) + j - 1`. The last response token predicts
nothing we score, so it is left out of the input: an example of P prompt and n response
tokens costs P + n - 1 positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Example:
    """One record cut to fit max_seq_len: what a batch needs and nothing else."""

    example_id: str
    prompt_ids: np.ndarray  # [P] int64
    response_ids: np.ndarray  # [n] int64
    topk_ids: np.ndarray  # [n, k] int64, -1 = padding entry
    topk_logprobs: np.ndarray  # [n, k] float32
    topk_mass: np.ndarray  # [n] float32
    tail_logprob: np.ndarray  # [n] float32: log of the teacher's mass outside the top-k
    cache: int = 0  # which cache of the run's mix it came from

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids) - 1


def fit_example(record, max_seq_len: int) -> tuple[Example | None, str | None]:
    """(example, None), (example, "truncated") when the response was cut to fit, or
    (None, reason) when the record cannot be used at all."""
    prompt_len = len(record.prompt_ids)
    if prompt_len == 0:
        return None, "empty_prompt"  # response token 0 would have no predicting position
    if prompt_len >= max_seq_len:
        return None, "prompt_too_long"
    keep = min(record.num_tokens, max_seq_len - prompt_len + 1)
    example = Example(record.example_id, record.prompt_ids, record.response_ids[:keep],
                      record.topk_ids[:keep], record.topk_logprobs[:keep], record.topk_mass[:keep],
                      record.tail_logprob[:keep])
    return example, ("truncated" if keep < record.num_tokens else None)


def pack_by_budget(examples: list[Example], max_tokens: int, max_examples: int) -> list[list[Example]]:
    """Sort by length and cut greedily into batches with rows x longest <= max_tokens.

    Sorting first keeps padding low; the caller shuffles the batches' order.
    """
    batches: list[list[Example]] = []
    current: list[Example] = []
    for example in sorted(examples, key=lambda e: e.length):
        if current and ((len(current) + 1) * example.length > max_tokens or len(current) >= max_examples):
            batches.append(current)
            current = []
        current.append(example)
    if current:
        batches.append(current)
    return batches


def collate(examples: list[Example], pad_id: int = 0) -> dict:
    """Right-padded inputs [B, T] plus the response positions' targets flattened to [N, ...]
    in the row-major order of `response_mask`, i.e. the order of hidden[response_mask]."""
    width = max(e.length for e in examples)
    rows = len(examples)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)
    response_mask = torch.zeros((rows, width), dtype=torch.bool)
    for row, e in enumerate(examples):
        tokens = np.concatenate([e.prompt_ids, e.response_ids[:-1]])
        input_ids[row, : len(tokens)] = torch.from_numpy(tokens)
        attention_mask[row, : len(tokens)] = 1
        start = len(e.prompt_ids) - 1
        response_mask[row, start : start + len(e.response_ids)] = True
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "response_mask": response_mask,
        "topk_ids": torch.from_numpy(np.concatenate([e.topk_ids for e in examples])),
        "topk_logprobs": torch.from_numpy(np.concatenate([e.topk_logprobs for e in examples])),
        "topk_mass": torch.from_numpy(np.concatenate([e.topk_mass for e in examples])),
        "tail_logprob": torch.from_numpy(np.concatenate([e.tail_logprob for e in examples])),
        "target_ids": torch.from_numpy(np.concatenate([e.response_ids for e in examples])),
        "example_ids": [e.example_id for e in examples],
    }


def empty_batch(k: int) -> dict:
    """A one-position batch with nothing to score: keeps FSDP ranks in step when one has no data."""
    return {
        "input_ids": torch.zeros((1, 1), dtype=torch.long),
        "attention_mask": torch.ones((1, 1), dtype=torch.long),
        "response_mask": torch.zeros((1, 1), dtype=torch.bool),
        "topk_ids": torch.zeros((0, k), dtype=torch.long),
        "topk_logprobs": torch.zeros((0, k), dtype=torch.float32),
        "topk_mass": torch.zeros((0,), dtype=torch.float32),
        "tail_logprob": torch.zeros((0,), dtype=torch.float32),
        "target_ids": torch.zeros((0,), dtype=torch.long),
        "example_ids": [],
    }
