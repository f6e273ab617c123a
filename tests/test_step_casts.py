"""One optimizer step's micro-batches share autocast's bf16 copies of the weights
(stages.distill.trainer.step_casts): the same gradients, one cast of each weight per step."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Qwen2Config, Qwen2ForCausalLM

from stages.distill.trainer import step_casts


class _CountBf16Casts(TorchDispatchMode):
    """Counts float32 -> bf16 casts of tensors shaped like a weight (two dimensions)."""

    def __init__(self):
        super().__init__()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16 \
                and args[0].dtype == torch.float32 and args[0].dim() == 2:
            self.casts += 1
        return func(*args, **kwargs)


def _model():
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        tie_word_embeddings=False)).train()


def _accumulate(model, batches, context) -> list[torch.Tensor]:
    """The trainer's micro-batch loop: forward under autocast, backward outside it."""
    model.zero_grad(set_to_none=True)
    with context:
        for ids in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def _batches():
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 96, (2, 12), generator=generator) for _ in range(3)]


def test_micro_batches_of_a_step_give_the_same_gradients_with_their_casts_shared():
    model, batches = _model(), _batches()
    each = _accumulate(model, batches, nullcontext())
    shared = _accumulate(model, batches, step_casts(model, "cpu"))
    assert all(torch.equal(a, b) for a, b in zip(each, shared))
    assert any(g.abs().sum() > 0 for g in shared)


def test_each_weight_is_cast_once_a_step_not_once_a_micro_batch():
    model, batches = _model(), _batches()
    with _CountBf16Casts() as per_micro_batch:
        _accumulate(model, batches, nullcontext())
    with _CountBf16Casts() as per_step:
        _accumulate(model, batches, step_casts(model, "cpu"))
    linear_weights = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert per_micro_batch.casts == 3 * per_step.casts
    assert per_step.casts >= linear_weights
    # and the copies are gone once the step's region ends: the next step casts the updated weights
    with _CountBf16Casts() as next_step:
        _accumulate(model, batches, step_casts(model, "cpu"))
    assert next_step.casts == per_step.casts

