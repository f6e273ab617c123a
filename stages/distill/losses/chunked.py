"""One chunking mechanism for every loss: positions in chunks, gradients fused.

Why: at Qwen's vocabulary (151,936) the float32 logits of 1,024 positions take
620 MB, and log_softmax, the tail mask and their gradients several times that.
`chunked_loss` holds one chunk of logits at a time: for each chunk of positions
it forms the logits (hidden @ W.T in the hidden dtype, upcast to at least
float32), the loss of those rows and, right away, their gradient with respect
to the logits (student_logits.py), which it folds into the gradients of the hidden
states, LM-head weight and bias (matmuls in the hidden dtype as autograd's
would be; the weight's gradient summed over chunks in the weight's dtype, so
a bfloat16 head rounds once per chunk). Backward only scales what forward
stored: no recomputation, unlike torch.utils.checkpoint (the idea of
Liger-Kernel's fused linear cross-entropy). Given plain logits instead of
hidden states, it chunks them the same way.

A chunk function maps (z [c, V] student logits of the chunk in the compute
dtype, which it may overwrite; rows: the chunk's slice of the N positions;
want_grad) to (its share of the loss, already divided by N; a detached
[len(STAT_NAMES)] vector of per-position sums; dL/dz or None). Double
backward is not supported: the gradient is formed inside forward.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F

from .categories import Categories, TeacherChunk
from .config import LossConfig
from .divergences import divergence, forward_kl, reverse_kl

STAT_NAMES = (
    "fkl",
    "rkl",
    "head_weight",
    "teacher_topk_mass",
    "student_topk_mass",
    "top1_agreement",
    "ce",
)

ChunkFn = Callable[[torch.Tensor, slice, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def distill_chunk_fn(
    teacher: Callable[[slice, torch.dtype], TeacherChunk],
    student: Callable[[torch.Tensor, slice], object],
    config: LossConfig,
    n_total: int,
) -> ChunkFn:
    """The chunk function of config's loss.

    teacher(rows, dtype) -> TeacherChunk; student(z, rows) -> a student_logits.py view.
    """
    ce_in_loss = config.kind == "ce" or config.ce_weight > 0
    kl_in_loss = config.kind in ("fkl", "rkl", "akd")

    def chunk_loss(z: torch.Tensor, rows: slice, want_grad: bool):
        p = teacher(rows, z.dtype)
        q = student(z, rows)
        log_q = q.log_q.requires_grad_(want_grad)
        ce = q.ce(q.lse)
        if ce is not None:
            ce.requires_grad_(want_grad and ce_in_loss)
        with torch.enable_grad() if want_grad else nullcontext():
            cats = Categories(p.log_p, log_q, p.valid, p.has_tail)
            with torch.set_grad_enabled(want_grad and kl_in_loss):
                fkl, rkl = forward_kl(cats), reverse_kl(cats)
            div, w = divergence(cats, config, fkl, rkl)
            loss = _mix(div, ce, config).sum() / n_total
        nan = z.new_tensor(math.nan)
        stats = torch.stack(
            [
                fkl.sum(),
                rkl.sum(),
                nan if w is None else w.sum(),
                p.topk_mass.sum(),
                q.topk_mass.sum(),
                (q.top1 == p.top1).sum().to(z.dtype),
                nan if ce is None else ce.sum(),
            ]
        ).detach()
        if not want_grad:
            return loss, stats, None
        leaves = (log_q, ce) if ce_in_loss else (log_q,)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        a = grads[0] if grads[0] is not None else torch.zeros_like(log_q)
        return loss.detach(), stats, q.grad(a, grads[1] if ce_in_loss else None)

    return chunk_loss


def chunked_loss(
    chunk_fn: ChunkFn,
    source: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    chunk_size: int,
    vocab_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, stat sums) over all rows of source.

    source: hidden states [N, H] with weight [V', H] (and bias [V']), or logits
    [N, V'] when weight is None. Only the first vocab_size logits are used.
    """
    wants = tuple(
        torch.is_grad_enabled() and t is not None and t.requires_grad for t in (source, weight, bias)
    )
    return _FusedChunks.apply(chunk_fn, chunk_size, vocab_size, wants, source, weight, bias)


class _FusedChunks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, chunk_fn, chunk_size, vocab_size, wants, source, weight, bias):
        want_source, want_weight, want_bias = wants
        any_grad = any(wants)
        compute = torch.promote_types(source.dtype, torch.float32)
        projected = weight is not None
        if projected:
            w = weight[:vocab_size].to(source.dtype)
            b = None if bias is None else bias[:vocab_size].to(source.dtype)
        grad_source = torch.zeros_like(source) if want_source else None
        # the head's gradient is written by its first chunk, not added to zeros: zeroing all V' x H
        # float32 entries (545 MB at Qwen's size) cost 2% of a bf16 step; only unused rows are zeroed
        grad_weight = _rows_beyond(weight, vocab_size) if want_weight else None
        weight_written = False
        grad_bias = torch.zeros(bias.shape, dtype=compute, device=bias.device) if want_bias else None

        n = source.shape[0]
        loss = torch.zeros((), dtype=compute, device=source.device)
        stats = torch.zeros(len(STAT_NAMES), dtype=compute, device=source.device)
        with torch.autocast(source.device.type, enabled=False):
            for start in range(0, n, chunk_size):
                rows = slice(start, min(start + chunk_size, n))
                part = source[rows]
                if projected:  # a fresh tensor: the chunk function may overwrite it
                    z = F.linear(part, w, b).to(compute)
                else:
                    z = part[:, :vocab_size].to(compute, copy=True)
                chunk_loss, chunk_stats, g = chunk_fn(z, rows, any_grad)
                del z  # g reuses its buffer: release both before the next chunk
                loss += chunk_loss
                stats += chunk_stats
                if g is None:
                    continue
                if not projected:
                    grad_source[rows, :vocab_size] = g
                    del g
                    continue
                if want_bias:
                    grad_bias[:vocab_size] += g.sum(dim=0)
                g = g.to(part.dtype)  # the matmuls run in the hidden dtype, as autograd's would
                if want_source:
                    grad_source[rows] = g @ w
                if want_weight:
                    _write_or_add(grad_weight[:vocab_size], g.t(), part, add=weight_written)
                    weight_written = True
                del g
        if want_weight and not weight_written:  # no rows: a zero gradient
            grad_weight.zero_()
        ctx.grads = (grad_source, grad_weight, grad_bias)
        ctx.versions = tuple(None if g is None else g._version for g in ctx.grads)
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (source, weight, bias))
        ctx.mark_non_differentiable(stats)
        return loss, stats

    @staticmethod
    def backward(ctx, grad_loss, _grad_stats):
        # A detached alias lets autograd adopt the stored buffer as .grad instead
        # of copying it; the version check catches in-place edits of that .grad
        # before a second backward (retain_graph) would reuse the buffer.
        unit = bool(grad_loss == 1)
        out = []
        for grad, version, dtype in zip(ctx.grads, ctx.versions, ctx.dtypes):
            if grad is not None:
                if grad._version != version:
                    raise RuntimeError(
                        "fused distillation loss: its stored gradient was modified in place after an "
                        "earlier backward; recompute the loss instead of reusing the graph"
                    )
                grad = grad.detach() if unit else grad * grad_loss.to(grad.dtype)
                grad = grad.to(dtype)
            out.append(grad)
        return (None, None, None, None, *out)


def _rows_beyond(weight: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """An uninitialised gradient like weight whose rows from vocab_size on (ids the tokenizer
    never produces) are zero."""
    grad = torch.empty_like(weight)
    grad[vocab_size:].zero_()
    return grad


def _write_or_add(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, add: bool) -> None:
    """out (+)= a @ b, the product in a's dtype (the hidden dtype, as autograd's would be)."""
    if out.dtype == a.dtype:
        if add:
            out.addmm_(a, b)
        else:
            torch.mm(a, b, out=out)
    elif add:  # hidden and weight dtypes differ
        out += a @ b
    else:
        out.copy_(a @ b)


def _mix(div: torch.Tensor | None, ce: torch.Tensor | None, config: LossConfig) -> torch.Tensor:
    if config.kind == "ce":
        return ce
    if config.ce_weight == 0:
        return div
    return (1 - config.ce_weight) * div + config.ce_weight * ce
