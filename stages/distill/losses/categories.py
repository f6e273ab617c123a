"""The teacher's side of the comparison: P over the categories, and the container.

Top-k form (the cache): the categories are the teacher's k stored tokens plus
one tail bucket for the rest of the vocabulary, C = k + 1. Dense form: the whole
vocabulary, C = V, no tail bucket. The divergences see only a Categories chunk,
so both forms share one code path.

The teacher's log-probs are used as stored (raw full-vocabulary log-softmax)
and never renormalised over the top-k. Its tail bucket is the cache's
tail_logprob, log(1 - sum_j p_j) computed in float64 by the writer (cache
format 2), floored at log(eps); -inf (a top-k holding all the mass) becomes
eps. A caller without a tail_logprob gets p_tail = max(1 - topk_mass, eps)
from the float32 mass, which resolves no tail finer than 6e-8. The floor
holds for every tail below eps, not only a zero one: a float32 engine's
log-softmax (vLLM's raw log-probs) already leaves the tail its top-k implies
uncertain by about 1e-7 at Qwen's vocabulary, so below eps the stored value is
noise, and the floor bounds what that noise does to log P_tail.
With a KD temperature T != 1 the teacher's log-probs, tail bucket included,
are divided by T and renormalised over the categories, and the eps floor is
applied after that. For the top-k form this is the tail-bucket approximation:
the tail is tempered as if it were a single token of probability p_tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Categories:
    """A chunk of c positions over C categories, in the compute dtype.

    log_p, log_q: [c, C] teacher / student log-probs, finite; 0 where not valid.
    valid:        [c, C] bool (False on padded top-k entries), or None: all valid.
    has_tail:     the last column is the tail bucket (never in AKD's head).
    """

    log_p: torch.Tensor
    log_q: torch.Tensor
    valid: torch.Tensor | None
    has_tail: bool


@dataclass
class TeacherChunk:
    """The teacher's rows of one chunk: P, and what logging needs.

    log_p [c, C], valid [c, C] or None, has_tail; top1 [c]: vocabulary id of its
    most likely token; topk_mass [c]: its stored top-k mass (nan when dense).
    """

    log_p: torch.Tensor
    valid: torch.Tensor | None
    has_tail: bool
    top1: torch.Tensor
    topk_mass: torch.Tensor


def teacher_topk(
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    topk_mass: torch.Tensor,
    temperature: float,
    eps: float,
    dtype: torch.dtype,
    tail_logprob: torch.Tensor | None = None,
) -> TeacherChunk:
    """topk_ids [c, k] int64 (-1 = padding), topk_logprobs [c, k], topk_mass [c],
    tail_logprob [c] (log of the mass outside the top-k) or None: the tail is 1 - topk_mass."""
    token_valid = topk_ids >= 0
    tokens = topk_logprobs.to(dtype)
    mass = topk_mass.to(dtype)
    valid = torch.cat([token_valid, torch.ones_like(token_valid[:, :1])], dim=1)
    if tail_logprob is None:
        log_tail = torch.log((1.0 - mass).clamp_min(0.0))
    else:
        log_tail = tail_logprob.to(dtype)
    log_p = torch.cat([tokens, log_tail[:, None]], dim=1)
    if temperature != 1.0:
        scaled = (log_p / temperature).masked_fill(~valid, -math.inf)
        log_p = scaled - torch.logsumexp(scaled, dim=-1, keepdim=True)
    log_p[:, -1].clamp_min_(math.log(eps))
    best = tokens.masked_fill(~token_valid, -math.inf).argmax(dim=-1, keepdim=True)
    return TeacherChunk(
        log_p=log_p.masked_fill(~valid, 0.0),
        valid=valid,
        has_tail=True,
        top1=topk_ids.gather(1, best).squeeze(1),
        topk_mass=mass,
    )


def teacher_dense(teacher_logprobs: torch.Tensor, temperature: float, dtype: torch.dtype) -> TeacherChunk:
    """teacher_logprobs [c, V]: the full log-softmax, finite."""
    log_p = teacher_logprobs.to(dtype)
    if temperature != 1.0:
        log_p = torch.log_softmax(log_p / temperature, dim=-1)
    return TeacherChunk(
        log_p=log_p,
        valid=None,
        has_tail=False,
        top1=log_p.argmax(dim=-1),
        topk_mass=torch.full(log_p.shape[:1], math.nan, dtype=dtype, device=log_p.device),
    )
