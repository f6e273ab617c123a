"""The student's side: Q over the categories from its logits, and the way back.

A view takes one chunk of student logits z [c, V] (compute dtype, owned: it
is overwritten in place) and exposes log_q [c, C] and, given target ids, the
cross-entropy ce [c] at temperature 1. The loss is differentiated with autograd
on those small tensors only; `grad(a, a_ce)` then maps a = dL/dlog_q [c, C]
and a_ce = dL/dce [c] to dL/dz [c, V] in closed form, reusing the view's buffer:
a handful of passes over [c, V] instead of autograd's dozen, and one [c, V]
buffer per chunk instead of several.

Top-k: log q_j = zt[i_j] - lse(zt) with zt = z / T, and
log q_tail = log(sum of exp(zt) outside the top-k) - lse(zt): a sum of the
tail entries themselves (no 1 - sum cancellation), floored at log(eps) like the
teacher's tail. With softmax s_v and tail-normalised softmax s_v / q_tail,
    dL/dzt_v = a_j - A q_j                  for v = i_j
             = a_tail s_v / q_tail - A s_v  outside the top-k,   A = sum_c a_c.
Dense: log_q = zt - lse(zt), dL/dzt = a - A softmax(zt).
Cross-entropy adds a_ce (softmax(z) - onehot(target)); dL/dz = dL/dzt / T.
"""

from __future__ import annotations

import math

import torch


class _StudentView:
    """Shared bookkeeping: temperature, argmax and cross-entropy."""

    def __init__(self, z: torch.Tensor, targets: torch.Tensor | None, temperature: float):
        self.temperature = temperature
        self.targets = targets
        self.top1 = z.argmax(dim=-1)
        self.target_logit = None if targets is None else z.gather(1, targets[:, None]).squeeze(1)
        self.z1 = None
        if temperature == 1.0:
            self.zt = z
        elif targets is not None:  # cross-entropy needs the untempered logits later
            self.z1, self.zt = z, z / temperature
        else:
            self.zt = z.div_(temperature)

    def ce(self, lse_t: torch.Tensor) -> torch.Tensor | None:
        """[c] -log softmax(z)[target] (lse_t: the tempered logsumexp)."""
        if self.targets is None:
            return None
        lse = lse_t if self.z1 is None else torch.logsumexp(self.z1, dim=-1)
        self.lse1 = lse
        return lse - self.target_logit

    def _finish(self, g: torch.Tensor, a_ce: torch.Tensor | None) -> torch.Tensor:
        """g holds dL/dzt (with the T = 1 cross-entropy softmax already in it)."""
        if self.temperature != 1.0:
            g.div_(self.temperature)
        if a_ce is None:
            return g
        if self.z1 is not None:
            softmax1 = self.z1.sub_(self.lse1[:, None]).exp_()
            g.add_(softmax1.mul_(a_ce[:, None]))
        return g.scatter_add_(1, self.targets[:, None], -a_ce[:, None])

    def _ce_in_softmax(self, a_ce: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """Weight of softmax(zt) that the cross-entropy adds (only when zt = z)."""
        if a_ce is None or self.z1 is not None:
            return torch.zeros_like(like)
        return a_ce


class StudentTopk(_StudentView):
    """Q over the teacher's top-k plus a tail bucket; z [c, V], topk_ids [c, k]."""

    def __init__(self, z, topk_ids, targets, temperature: float, eps: float):
        super().__init__(z, targets, temperature)
        self.valid = topk_ids >= 0
        self.ids = topk_ids.clamp_min(0)
        m = self.zt.amax(dim=-1, keepdim=True)
        top = self.zt.gather(1, self.ids)
        self.e = self.zt.sub_(m).exp_()  # exp(zt - max) in place: the gradient buffer
        self.total = self.e.sum(dim=-1)
        self.lse = m.squeeze(1) + self.total.log()
        log_q_tok = (top - self.lse[:, None]).masked_fill(~self.valid, 0.0)
        self.q_tok = log_q_tok.exp().masked_fill(~self.valid, 0.0)
        self.e.scatter_reduce_(1, self.ids, (~self.valid).to(self.e.dtype), reduce="prod")
        self.tail_total = self.e.sum(dim=-1)  # exp(zt - max) summed outside the top-k
        raw_tail = self.tail_total.log() - self.total.log()
        self.tail_floored = raw_tail < math.log(eps)
        log_q_tail = raw_tail.clamp_min(math.log(eps))
        self.log_q = torch.cat([log_q_tok, log_q_tail[:, None]], dim=1)
        self.topk_mass = self.q_tok.sum(dim=-1)

    def grad(self, a: torch.Tensor, a_ce: torch.Tensor | None) -> torch.Tensor:
        a_tok = a[:, :-1].masked_fill(~self.valid, 0.0)
        a_tail = a[:, -1].masked_fill(self.tail_floored, 0.0)
        shift = self._ce_in_softmax(a_ce, a_tail) - a_tok.sum(dim=-1) - a_tail
        per_tail = torch.where(self.tail_total > 0, a_tail / self.tail_total, torch.zeros_like(a_tail))
        g = self.e.mul_((per_tail + shift / self.total)[:, None])
        on_topk = (a_tok + shift[:, None] * self.q_tok).masked_fill(~self.valid, 0.0)
        return self._finish(g.scatter_add_(1, self.ids, on_topk), a_ce)


class StudentDense(_StudentView):
    """Q over the whole vocabulary; z [c, V]."""

    def __init__(self, z, targets, temperature: float):
        super().__init__(z, targets, temperature)
        self.lse = torch.logsumexp(self.zt, dim=-1)
        self.log_q = self.zt.sub_(self.lse[:, None])
        self.topk_mass = torch.full_like(self.lse, math.nan)

    def grad(self, a: torch.Tensor, a_ce: torch.Tensor | None) -> torch.Tensor:
        shift = self._ce_in_softmax(a_ce, self.lse) - a.sum(dim=-1)
        return self._finish(a.add_(self.log_q.exp().mul_(shift[:, None])), a_ce)
