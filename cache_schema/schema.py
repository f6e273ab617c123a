"""Cache format version 2: one Parquet row per (example, sample).

Columns (ids are ids, never text, so the student needs no re-tokenisation):
- example_id      string       stable "<dataset>:<row>:<sample>" id
- prompt_ids      list<int32>  the student-side prompt (chat template applied)
- response_ids    list<int32>  what the teacher generated, end-of-turn token included
- finish_reason   string       "stop" or "length" (cut by the token limit)
- outside_pos / outside_logprob: positions whose sampled token is not in the stored top-k,
                               with that token's log-prob (vLLM's k+1-th entry); empty when greedy
- tail_logprob    list<float32> per position, log(1 - sum_j exp(l_j)): the log of the teacher's
                               mass outside the stored top-k, computed in float64 from the
                               unrounded log-probs (-inf where the top-k holds all the mass)
- the encoding's top-k columns (see encoding.py): k ids and log-probs per position, sorted by
  probability, and the top-k mass: the sum of the teacher's top-k probabilities from unrounded
  log-probs, at float32.

Version 1 was version 2 without `tail_logprob`: its tail was 1 - topk_mass, which float32
cannot resolve finer than 6e-8 (the step of float32 just below 1): a true tail of 3e-8 read back
as 0 or 6e-8. A version-1 cache is refused in one line that says how to rebuild it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

FORMAT_VERSION = 2  # what the writer writes and the readers accept

BASE_FIELDS = [
    pa.field("example_id", pa.string()),
    pa.field("prompt_ids", pa.list_(pa.int32())),
    pa.field("response_ids", pa.list_(pa.int32())),
    pa.field("finish_reason", pa.string()),
    pa.field("outside_pos", pa.list_(pa.int32())),
    pa.field("outside_logprob", pa.list_(pa.float32())),
]
TAIL_FIELD = pa.field("tail_logprob", pa.list_(pa.float32()))
FINISH_REASONS = ("stop", "length")


def arrow_schema(encoding) -> pa.Schema:
    return pa.schema(BASE_FIELDS + [TAIL_FIELD] + encoding.fields())


@dataclass
class CachedExample:
    """One teacher answer as the teacher stage hands it to the writer.

    topk_ids / topk_logprobs: [n, <=k], sorted by log-prob descending, raw full-vocabulary
    log-softmax at temperature 1. sampled_logprobs: [n], the log-prob of each response token.
    """

    example_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    topk_ids: np.ndarray
    topk_logprobs: np.ndarray
    finish_reason: str
    sampled_logprobs: np.ndarray | None = None


@dataclass
class CacheRecord:
    """One example as the reader hands it out: arrays ready for the loss.

    prompt_ids [P] int64, response_ids [n] int64, topk_ids [n, k] int64 (PAD_ID = -1 marks an
    empty entry), topk_logprobs [n, k] float32, topk_mass [n] float32, tail_logprob [n]
    float32: log of the teacher's mass outside the top-k.
    """

    example_id: str
    prompt_ids: np.ndarray
    response_ids: np.ndarray
    topk_ids: np.ndarray
    topk_logprobs: np.ndarray
    topk_mass: np.ndarray
    finish_reason: str
    shard: str
    outside_pos: np.ndarray | None = None  # positions whose sampled token is not in the top-k
    outside_logprob: np.ndarray | None = None  # and that token's log-prob
    tail_logprob: np.ndarray | None = None  # [n] float32; always set by the reader

    @property
    def num_tokens(self) -> int:
        return int(self.response_ids.shape[0])

    def to_torch(self) -> dict:
        import torch

        return {
            "prompt_ids": torch.from_numpy(self.prompt_ids),
            "response_ids": torch.from_numpy(self.response_ids),
            "topk_ids": torch.from_numpy(self.topk_ids),
            "topk_logprobs": torch.from_numpy(self.topk_logprobs),
            "topk_mass": torch.from_numpy(self.topk_mass),
            "tail_logprob": None if self.tail_logprob is None else torch.from_numpy(self.tail_logprob),
        }
