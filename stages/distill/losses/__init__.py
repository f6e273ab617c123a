"""Distillation losses of stage two, on a top-k teacher cache or a dense teacher.

Methods: FKL (KD, Hinton et al. 2015), RKL (MiniLLM, Gu et al. 2024), AKD (the
adaptive KL of AKL, Wu et al. 2024, arXiv 2404.02657), skew KL and skew reverse
KL (DistiLLM, Ko et al. 2024), generalised JSD (GKD, Agarwal et al. 2024),
total variation, and cross-entropy on the teacher's response tokens, mixable
with any divergence: loss = (1 - ce_weight) * divergence + ce_weight * CE.
Formulas and the AKD head rule: divergences.py and docs/design.md; the teacher's
tail bucket and temperature: categories.py; the student's: student_logits.py.

Rows: the caller passes only valid response positions, flattened to N rows
(e.g. hidden[mask] for a [B, T] mask); the loss is the mean over those N
positions, never over (position, k) entries.

    from stages.distill.losses import LossConfig, topk_distill_loss
    loss, stats = topk_distill_loss(hidden, lm_head.weight, topk_ids, topk_logprobs,
                                    topk_mass, target_ids, LossConfig(kind="akd"),
                                    vocab_size=len(tokenizer))

topk_distill_loss(hidden [N, H], lm_head_weight [V', H], topk_ids [N, k] int64
    (-1 = padding entry), topk_logprobs [N, k] (raw teacher log-probs, never
    renormalised), topk_mass [N] (teacher's mass on its top-k), target_ids [N]
    int64 or None, config, *, vocab_size=None, lm_head_bias=None [V'],
    tail_logprob=None [N] (log of the teacher's mass outside its top-k, as the
    cache stores it; None: 1 - topk_mass, for callers that hold no tail))
    The main path: logits are formed chunk by chunk (config.chunk_size
    positions, default 256) in the hidden dtype and upcast to float32; the
    gradient is formed in the same pass, so the float32 working set is about
    one [chunk, V] buffer (156 MB at Qwen's V) and the full [N, V] logits
    never exist (chunked.py, student_logits.py).
topk_distill_loss_from_logits(logits [N, V'], topk_ids, topk_logprobs,
    topk_mass, target_ids, config, *, vocab_size=None, tail_logprob=None)
dense_distill_loss(student_logits [N, V'], teacher_logprobs [N, V''],
    target_ids [N] or None, config, *, vocab_size=None)
    Categories are the whole vocabulary (no tail bucket).

vocab_size keeps only the first vocab_size logits (model rows beyond the
tokenizer, e.g. Qwen's 151,936 vs 151,665, get no mass); it defaults to all.
Each call returns (loss: 0-d tensor, stats: dict of floats): loss, fkl, rkl
(always computed, at the KD temperature), head_weight (mean AKD w; nan for
other kinds), teacher_topk_mass, student_topk_mass (nan for dense),
top1_agreement (student argmax == teacher top-1), ce (nan without
target_ids), tokens (N). Bad input raises LossInputError naming the tensor
and row.
"""

from .api import dense_distill_loss, topk_distill_loss, topk_distill_loss_from_logits
from .config import LOSS_KINDS, LossConfig, LossInputError

__all__ = [
    "LOSS_KINDS",
    "LossConfig",
    "LossInputError",
    "dense_distill_loss",
    "topk_distill_loss",
    "topk_distill_loss_from_logits",
]
