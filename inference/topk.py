"""Turn each engine's raw log-prob output into the [n, k] arrays of a Generation."""
from __future__ import annotations

import numpy as np
import torch

TopK = tuple[np.ndarray, np.ndarray, np.ndarray]  # ids [n,k] int32, logprobs [n,k] f32, sampled [n] f32


def _sorted_desc(ids: np.ndarray, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-logprobs, axis=1, kind="stable")
    return (np.take_along_axis(ids, order, axis=1).astype(np.int32),
            np.take_along_axis(logprobs, order, axis=1).astype(np.float32))


def topk_from_vllm_flat(flat, k: int, n_tokens: int) -> TopK:
    """Split vLLM's FlatLogprobs (SamplingParams(flat_logprobs=True)) into arrays.

    vLLM writes k+1 entries per position: the sampled token first (with its rank), then
    ranks 1..k. The sampled entry repeats one of the top k when the sampled token is in
    it; either way the top k are entries 1..k and the sampled log-prob is entry 0.
    """
    if len(flat) != n_tokens:
        raise RuntimeError(f"vLLM returned log-probs for {len(flat)} of {n_tokens} tokens")
    if n_tokens == 0:
        return (np.zeros((0, k), np.int32), np.zeros((0, k), np.float32), np.zeros(0, np.float32))
    starts = np.asarray(flat.start_indices)
    ends = np.asarray(flat.end_indices)
    if not np.all(ends - starts == k + 1):
        raise RuntimeError(f"vLLM returned {sorted(set((ends - starts).tolist()))} log-prob "
                           f"entries per position, expected k+1 = {k + 1}")
    ids = np.asarray(flat.token_ids, dtype=np.int64).reshape(n_tokens, k + 1)
    lps = np.asarray(flat.logprobs, dtype=np.float32).reshape(n_tokens, k + 1)
    topk_ids, topk_lps = _sorted_desc(ids[:, 1:], lps[:, 1:])
    return topk_ids, topk_lps, lps[:, 0].copy()


def topk_from_logits(logits: torch.Tensor, sampled: torch.Tensor, k: int) -> TopK:
    """Top k of the full-vocabulary log-softmax of raw logits [n, V], at temperature 1."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top = torch.topk(logprobs, k, dim=-1, sorted=True)
    sampled_lp = logprobs.gather(-1, sampled.long().unsqueeze(-1)).squeeze(-1)
    return (top.indices.numpy().astype(np.int32), top.values.numpy().astype(np.float32),
            sampled_lp.numpy().astype(np.float32))
