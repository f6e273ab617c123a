"""The student: loaded from the Hub or a folder, checked against the cache, wrapped with its loss.

`DistillStudent.forward` runs the decoder body, keeps the hidden states of the response
positions and hands them with the LM head's weight to the chunked loss, so the full
[batch, seq, vocab] logits never exist. It is the module DDP/FSDP wrap: every parameter,
the head included, is used inside its forward, so their gradient hooks and all-gathers fire.
"""
from __future__ import annotations

import torch
from torch import nn

from cache_schema import tokenizer_fingerprint, tokenizer_size
from common.errors import first_line

from .errors import DistillError, TokenizerMismatchError
from .losses import LossConfig, topk_distill_loss

# Config fields of architectures whose logits are not lm_head(hidden): this loss would be wrong.
UNSUPPORTED_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:
        raise DistillError(f"cannot load the tokenizer of student {name_or_path!r}: {first_line(exc)}") from None


def load_model(source: str):
    """The causal LM in float32 (the master weights; autocast runs the matmuls in bf16)."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise DistillError(f"cannot load student weights from {source!r}: {first_line(exc)}") from None
    for name in UNSUPPORTED_LOGIT_TRANSFORMS:
        if getattr(model.config, name, None) not in (None, 1, 1.0):
            raise DistillError(f"student {source!r} transforms its logits ({name}="
                               f"{getattr(model.config, name)}); the top-k loss supports lm_head(hidden) only")
    model.config.use_cache = False
    return model


def check_tokenizer(tokenizer, manifest, student: str) -> int:
    """Refuse a student whose token ids differ from the cache's; returns its vocabulary size."""
    expected = manifest.identity.get("tokenizer_fingerprint")
    found = tokenizer_fingerprint(tokenizer)
    if expected != found:
        teacher = manifest.identity.get("teacher", {})
        teacher = teacher.get("model") if isinstance(teacher, dict) else teacher
        raise TokenizerMismatchError(
            f"student {student!r} has tokenizer fingerprint {found}, but the cache was made by teacher "
            f"{teacher!r} with fingerprint {expected}: the token ids differ, so the student cannot learn "
            "from this cache")
    return tokenizer_size(tokenizer)


class DistillStudent(nn.Module):
    """The HF causal LM plus the distillation loss, as one module for DDP/FSDP."""

    def __init__(self, model, loss_config: LossConfig, vocab_size: int):
        super().__init__()
        self.model = model
        self.loss_config = loss_config
        self.vocab_size = vocab_size
        rows = model.get_output_embeddings().weight.shape[0]
        if vocab_size > rows:
            raise DistillError(f"the tokenizer has {vocab_size} ids but the student's LM head only {rows} rows")

    def body(self) -> nn.Module:
        return self.model.get_decoder()

    def forward(self, input_ids, attention_mask, response_mask, topk_ids, topk_logprobs, topk_mass,
                target_ids, tail_logprob=None, loss_weight: float = 1.0):
        """(loss x loss_weight, stats): the loss is the mean over the batch's response tokens.
        tail_logprob: the cache's log tail mass; None: log(1 - topk_mass), for callers that have no tail."""
        hidden = self.body()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        rows = hidden[response_mask]
        device = rows.device.type
        if torch.is_autocast_enabled(device):  # the head would run in the autocast dtype too
            rows = rows.to(torch.get_autocast_dtype(device))
        head = self.model.get_output_embeddings()
        loss, stats = topk_distill_loss(rows, head.weight, topk_ids, topk_logprobs, topk_mass, target_ids,
                                        self.loss_config, vocab_size=self.vocab_size,
                                        lm_head_bias=head.bias, tail_logprob=tail_logprob)
        return loss * loss_weight, stats

    def decoder_layers(self) -> list[nn.Module]:
        """The repeated blocks FSDP shards one by one (transformers' _no_split_modules)."""
        names = set(getattr(self.model, "_no_split_modules", None) or [])
        layers = [m for m in self.model.modules() if type(m).__name__ in names]
        if not layers:
            raise DistillError(f"cannot find the decoder layers of {type(self.model).__name__} to shard")
        return layers
