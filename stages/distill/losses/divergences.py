"""Per-position divergences between the teacher P and the student Q.

Each function takes a Categories chunk (log_p, log_q: [c, C], valid mask) and
returns one value per position, shape [c]; the caller averages over positions.
Masked categories hold finite dummies (0) and are zeroed before summing, so
their gradients are exactly zero, never nan.

- FKL  KL(P || Q) = sum P (log P - log Q): classic KD (Hinton et al. 2015).
- RKL  KL(Q || P): reverse KD (MiniLLM, Gu et al. 2024).
- AKD  w * FKL + (1 - w) * RKL, the adaptive form of AKL (Wu et al. 2024,
       arXiv 2404.02657) as specified in docs/design.md: the head H is the smallest
       prefix of the teacher's tokens sorted by P (stable: ties keep stored
       order) whose mass reaches mu, the crossing token included (the paper's
       definition; the official code puts it in the tail); the top-1 is always
       in H; the tail bucket never is. g_head = sum_H |P - Q|, g_tail = the
       rest, both detached; w = g_head / (g_head + g_tail + eps).
- SKL  KL(P || a P + (1 - a) Q) and SRKL KL(Q || a Q + (1 - a) P): skew KL and
       skew reverse KL of DistiLLM (Ko et al. 2024), a = alpha.
- JSD  generalised JSD of GKD (Agarwal et al. 2024): with M = b P + (1 - b) Q,
       b KL(P || M) + (1 - b) KL(Q || M). The mixture formula vanishes at both
       ends, so b = 0 and b = 1 are defined as FKL and RKL exactly (as in TRL's
       GKD trainer): the loss is discontinuous there by convention.
- TVD  total variation, 0.5 * sum |P - Q|.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .categories import Categories
from .config import LossConfig


def kl(log_a: torch.Tensor, log_b: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """KL(A || B) per row from log-probs [c, C]."""
    return _masked_sum(log_a.exp() * (log_a - log_b), valid)


def forward_kl(cats: Categories) -> torch.Tensor:
    return kl(cats.log_p, cats.log_q, cats.valid)


def reverse_kl(cats: Categories) -> torch.Tensor:
    return kl(cats.log_q, cats.log_p, cats.valid)


def skew_kl(log_a: torch.Tensor, log_b: torch.Tensor, valid: torch.Tensor | None, a: float) -> torch.Tensor:
    """KL(A || a A + (1 - a) B)."""
    return kl(log_a, _log_mix(log_a, log_b, a), valid)


def generalised_jsd(cats: Categories, beta: float) -> torch.Tensor:
    if beta == 0.0:
        return forward_kl(cats)
    if beta == 1.0:
        return reverse_kl(cats)
    log_m = _log_mix(cats.log_p, cats.log_q, beta)
    return beta * kl(cats.log_p, log_m, cats.valid) + (1 - beta) * kl(cats.log_q, log_m, cats.valid)


def total_variation(cats: Categories) -> torch.Tensor:
    return 0.5 * _masked_sum((cats.log_p.exp() - cats.log_q.exp()).abs(), cats.valid)


def head_mask(cats: Categories, mu: float) -> torch.Tensor:
    """[c, C] bool: AKD's head set (see module docstring)."""
    eligible = torch.ones_like(cats.log_p, dtype=torch.bool) if cats.valid is None else cats.valid.clone()
    if cats.has_tail:
        eligible[:, -1] = False
    p = cats.log_p.detach().exp().masked_fill(~eligible, -1.0)
    sorted_p, order = torch.sort(p, dim=-1, descending=True, stable=True)
    mass_before = F.pad(sorted_p.clamp_min(0.0).cumsum(dim=-1)[:, :-1], (1, 0))
    in_head = (mass_before < mu) & (sorted_p >= 0.0)
    return torch.zeros_like(eligible).scatter(1, order, in_head)


def head_weight(cats: Categories, mu: float, eps: float) -> torch.Tensor:
    """[c] detached AKD weight w = g_head / (g_head + g_tail + eps)."""
    with torch.no_grad():
        gap = (cats.log_p.exp() - cats.log_q.exp()).abs()
        if cats.valid is not None:
            gap = gap.masked_fill(~cats.valid, 0.0)
        head = head_mask(cats, mu)
        g_head = gap.masked_fill(~head, 0.0).sum(dim=-1)
        g_tail = gap.masked_fill(head, 0.0).sum(dim=-1)
        return g_head / (g_head + g_tail + eps)


def divergence(
    cats: Categories, config: LossConfig, fkl: torch.Tensor, rkl: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(per-row divergence of config.kind or None for "ce", per-row AKD weight or None).

    fkl, rkl: the per-row FKL / RKL of cats, already computed (with graph) by the caller.
    """
    kind = config.kind
    if kind == "fkl":
        return fkl, None
    if kind == "rkl":
        return rkl, None
    if kind == "akd":
        w = head_weight(cats, config.mu, config.eps)
        return w * fkl + (1 - w) * rkl, w
    if kind == "skl":
        return skew_kl(cats.log_p, cats.log_q, cats.valid, config.alpha), None
    if kind == "srkl":
        return skew_kl(cats.log_q, cats.log_p, cats.valid, config.alpha), None
    if kind == "jsd":
        return generalised_jsd(cats, config.beta), None
    if kind == "tvd":
        return total_variation(cats), None
    return None, None  # "ce"


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, a: float) -> torch.Tensor:
    """log(a A + (1 - a) B), exact at a = 0 and a = 1."""
    if a == 0.0:
        return log_b
    if a == 1.0:
        return log_a
    return torch.logaddexp(log_a + math.log(a), log_b + math.log1p(-a))


def _masked_sum(terms: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is not None:
        terms = terms.masked_fill(~valid, 0.0)
    return terms.sum(dim=-1)
