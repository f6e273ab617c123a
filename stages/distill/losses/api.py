"""The three entry points: top-k cache from hidden states or logits, and dense teacher."""

from __future__ import annotations

import math

import torch

from .categories import teacher_dense, teacher_topk
from .chunked import STAT_NAMES, chunked_loss, distill_chunk_fn
from .config import LossConfig, LossInputError
from .student_logits import StudentDense, StudentTopk

Stats = dict[str, float]
_ROUNDING = 1e-3  # slack for stored log-probs and masses rounded above 0 / 1


def topk_distill_loss(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    topk_mass: torch.Tensor,
    target_ids: torch.Tensor | None,
    config: LossConfig | None = None,
    *,
    vocab_size: int | None = None,
    lm_head_bias: torch.Tensor | None = None,
    tail_logprob: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Loss of the student's final hidden states [N, H] against a top-k cache (memory-lean path)."""
    config = config or LossConfig()
    _check_matrix("hidden", hidden)
    _check_matrix("lm_head_weight", lm_head_weight)
    if lm_head_weight.shape[1] != hidden.shape[1]:
        raise LossInputError(
            f"lm_head_weight is {tuple(lm_head_weight.shape)} but hidden has width {hidden.shape[1]}"
        )
    if lm_head_bias is not None and lm_head_bias.shape != lm_head_weight.shape[:1]:
        raise LossInputError(f"lm_head_bias is {tuple(lm_head_bias.shape)}, expected ({lm_head_weight.shape[0]},)")
    vocab = _vocab(vocab_size, lm_head_weight.shape[0], "lm_head_weight rows")
    chunk_fn = _topk_chunk_fn(hidden.shape[0], vocab, topk_ids, topk_logprobs, topk_mass, tail_logprob,
                              target_ids, config)
    return _run(chunk_fn, hidden, lm_head_weight, lm_head_bias, config, vocab)


def topk_distill_loss_from_logits(
    logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    topk_mass: torch.Tensor,
    target_ids: torch.Tensor | None,
    config: LossConfig | None = None,
    *,
    vocab_size: int | None = None,
    tail_logprob: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Same loss from student logits [N, V'] (small vocabularies, tests)."""
    config = config or LossConfig()
    _check_matrix("logits", logits)
    vocab = _vocab(vocab_size, logits.shape[1], "logits columns")
    chunk_fn = _topk_chunk_fn(logits.shape[0], vocab, topk_ids, topk_logprobs, topk_mass, tail_logprob,
                              target_ids, config)
    return _run(chunk_fn, logits, None, None, config, vocab)


def dense_distill_loss(
    student_logits: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    target_ids: torch.Tensor | None,
    config: LossConfig | None = None,
    *,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Loss of student logits [N, V'] against full teacher log-probs [N, V''] (no tail bucket)."""
    config = config or LossConfig()
    _check_matrix("student_logits", student_logits)
    _check_matrix("teacher_logprobs", teacher_logprobs)
    n = student_logits.shape[0]
    if vocab_size is None and student_logits.shape[1] != teacher_logprobs.shape[1]:
        raise LossInputError(
            f"student_logits has {student_logits.shape[1]} columns, teacher_logprobs {teacher_logprobs.shape[1]}: "
            "pass vocab_size"
        )
    vocab = _vocab(vocab_size, min(student_logits.shape[1], teacher_logprobs.shape[1]), "logits columns")
    if teacher_logprobs.shape[0] != n:
        raise LossInputError(f"teacher_logprobs has {teacher_logprobs.shape[0]} rows, student_logits {n}")
    teacher = teacher_logprobs[:, :vocab]
    _refuse(~torch.isfinite(teacher), "teacher_logprobs row {} is not finite")
    _check_targets(target_ids, n, vocab, config)

    def teacher_rows(rows, dtype):
        return teacher_dense(teacher[rows], config.temperature, dtype)

    def student_rows(z, rows):
        return StudentDense(z, _rows(target_ids, rows), config.temperature)

    chunk_fn = distill_chunk_fn(teacher_rows, student_rows, config, n)
    return _run(chunk_fn, student_logits, None, None, config, vocab)


def _topk_chunk_fn(n, vocab, topk_ids, topk_logprobs, topk_mass, tail_logprob, target_ids, config):
    _check_topk(n, vocab, topk_ids, topk_logprobs, topk_mass, tail_logprob)
    _check_targets(target_ids, n, vocab, config)

    def teacher_rows(rows, dtype):
        ids, logprobs, mass = topk_ids[rows], topk_logprobs[rows], topk_mass[rows]
        tail = None if tail_logprob is None else tail_logprob[rows]
        return teacher_topk(ids, logprobs, mass, config.temperature, config.eps, dtype, tail)

    def student_rows(z, rows):
        return StudentTopk(z, topk_ids[rows], _rows(target_ids, rows), config.temperature, config.eps)

    return distill_chunk_fn(teacher_rows, student_rows, config, n)


def _rows(tensor: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    return None if tensor is None else tensor[rows]


def _run(chunk_fn, source, weight, bias, config, vocab) -> tuple[torch.Tensor, Stats]:
    n = source.shape[0]
    if n == 0:
        zero = source.sum() * 0.0
        return zero, {**dict.fromkeys(STAT_NAMES, math.nan), "loss": 0.0, "tokens": 0}
    loss, sums = chunked_loss(chunk_fn, source, weight, bias, chunk_size=config.chunk_size, vocab_size=vocab)
    stats = {name: value / n for name, value in zip(STAT_NAMES, sums.tolist())}
    return loss, {"loss": loss.item(), **stats, "tokens": n}


def _check_matrix(name: str, tensor: torch.Tensor) -> None:
    if tensor.dim() != 2:
        raise LossInputError(f"{name} must be 2-D [rows, columns], got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise LossInputError(f"{name} must be floating point, got {tensor.dtype}")


def _vocab(vocab_size: int | None, available: int, what: str) -> int:
    if vocab_size is None:
        return available
    if not 0 < vocab_size <= available:
        raise LossInputError(f"vocab_size {vocab_size} must be in [1, {available}] ({what})")
    return vocab_size


def _check_topk(n, vocab, topk_ids, topk_logprobs, topk_mass, tail_logprob) -> None:
    if topk_ids.dtype != torch.int64 or topk_ids.dim() != 2 or topk_ids.shape[0] != n:
        raise LossInputError(f"topk_ids must be int64 [{n}, k], got {topk_ids.dtype} {tuple(topk_ids.shape)}")
    if topk_logprobs.shape != topk_ids.shape or not topk_logprobs.is_floating_point():
        raise LossInputError(
            f"topk_logprobs must be float {tuple(topk_ids.shape)}, got {topk_logprobs.dtype} "
            f"{tuple(topk_logprobs.shape)}"
        )
    if topk_mass.shape != (n,) or not topk_mass.is_floating_point():
        raise LossInputError(f"topk_mass must be float [{n}], got {topk_mass.dtype} {tuple(topk_mass.shape)}")
    valid = topk_ids >= 0
    _refuse((topk_ids < -1) | (topk_ids >= vocab), f"topk_ids row {{}} holds an id outside [-1, {vocab})")
    _refuse(valid & ~torch.isfinite(topk_logprobs), "topk_logprobs row {} is not finite")
    _refuse(valid & (topk_logprobs > _ROUNDING), "topk_logprobs row {} is positive: not log-probabilities")
    finite_mass = torch.isfinite(topk_mass)
    _refuse(~finite_mass | (topk_mass < 0) | (topk_mass > 1 + _ROUNDING), "topk_mass row {} is outside [0, 1]")
    if tail_logprob is not None:
        if tail_logprob.shape != (n,) or not tail_logprob.is_floating_point():
            raise LossInputError(
                f"tail_logprob must be float [{n}], got {tail_logprob.dtype} {tuple(tail_logprob.shape)}")
        _refuse(torch.isnan(tail_logprob) | (tail_logprob > 0), "tail_logprob row {} is NaN or above 0")
    ordered = torch.sort(topk_ids, dim=1).values
    _refuse((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0), "topk_ids row {} repeats a token id")


def _check_targets(target_ids, n, vocab, config) -> None:
    if target_ids is None:
        if config.needs_targets:
            raise LossInputError(f"loss kind {config.kind!r} with ce_weight {config.ce_weight} needs target_ids")
        return
    if target_ids.dtype != torch.int64 or target_ids.shape != (n,):
        raise LossInputError(f"target_ids must be int64 [{n}], got {target_ids.dtype} {tuple(target_ids.shape)}")
    _refuse((target_ids < 0) | (target_ids >= vocab), f"target_ids row {{}} is outside [0, {vocab})")


def _refuse(bad: torch.Tensor, message: str) -> None:
    """Raise message, formatted with the first row holding a True in bad [N] or [N, k]."""
    if bad.any():
        row = int(bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()[0, 0])
        raise LossInputError(message.format(row))
