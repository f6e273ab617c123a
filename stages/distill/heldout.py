"""Evaluation on the held-out slice: FKL, RKL, top-1 agreement, NLL of the teacher's tokens.

Every figure is a mean over held-out response tokens of all ranks (token-weighted sums,
reduced across ranks), so it does not depend on how the slice was batched or split.
"""
from __future__ import annotations

import torch

from . import distributed
from .batching import empty_batch
from .data import move_batch

# loss stat -> metric name
EVAL_METRICS = {"loss": "eval_loss", "fkl": "eval_fkl", "rkl": "eval_rkl",
                "top1_agreement": "eval_top1_agreement", "ce": "eval_nll"}
PER_SEQUENCE = ("fkl", "rkl", "top1_agreement", "ce")  # what heldout/step-N.rank-R.jsonl holds per sequence


@torch.no_grad()
def evaluate(module, batches: list[dict], env, autocast, k: int, sequences: list | None = None) -> dict:
    """module: the trainer's (possibly wrapped) student. DDP is bypassed (its forward syncs
    buffers, a collective ranks with different batch counts would deadlock on); FSDP needs
    every rank in every forward, so ranks with fewer batches run empty ones. `sequences`: a
    list that gets this rank's per-batch figures (one sequence a batch where the slice was
    packed one example per batch), each with its example id and token count."""
    fsdp = distributed.is_fsdp(module)
    target = module if fsdp else distributed.unwrap(module)
    count = distributed.max_across(env, len(batches)) if fsdp else len(batches)
    sums = dict.fromkeys(EVAL_METRICS, 0.0)
    tokens = 0
    target.eval()
    for i in range(count):
        batch = batches[i] if i < len(batches) else empty_batch(k)
        with autocast:
            _, stats = target(**move_batch(_inputs(batch), env.device))
        if stats["tokens"]:
            tokens += stats["tokens"]
            for key in EVAL_METRICS:
                sums[key] += stats[key] * stats["tokens"]
            if sequences is not None:
                sequences.append({"example_ids": batch["example_ids"], "tokens": int(stats["tokens"]),
                                  **{key: float(stats[key]) for key in PER_SEQUENCE}})
    target.train()
    totals = distributed.sum_across(env, [tokens, *sums.values()])
    tokens = int(totals[0])
    result = {"eval_tokens": tokens}
    for key, value in zip(EVAL_METRICS.values(), totals[1:]):
        result[key] = value / tokens if tokens else float("nan")
    return result


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "example_ids"}
