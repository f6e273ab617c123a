"""Distillation losses against a plain float64 reference written from the formulas."""

import math

import pytest
import torch

from stages.distill.losses import (
    LOSS_KINDS,
    LossConfig,
    LossInputError,
    dense_distill_loss,
    topk_distill_loss,
    topk_distill_loss_from_logits,
)
from stages.distill.losses.categories import Categories
from stages.distill.losses.chunked import _rows_beyond, _write_or_add
from stages.distill.losses.divergences import head_mask
from stages.distill.losses.student_logits import StudentTopk

F64 = torch.float64
DIVERGENCES = tuple(kind for kind in LOSS_KINDS if kind != "ce")


# ----------------------------------------------------------------------------- reference
def ref_divergence(kind, P, Q, n_tokens, cfg):
    """P, Q: lists of 0-d float64 tensors; the first n_tokens are tokens, the rest a tail."""
    def kl(A, B):
        return sum(a * torch.log(a / b) for a, b in zip(A, B))

    if kind == "fkl" or (kind == "jsd" and cfg.beta == 0):
        return kl(P, Q)
    if kind == "rkl" or (kind == "jsd" and cfg.beta == 1):
        return kl(Q, P)
    if kind == "skl":
        return kl(P, [cfg.alpha * p + (1 - cfg.alpha) * q for p, q in zip(P, Q)])
    if kind == "srkl":
        return kl(Q, [cfg.alpha * q + (1 - cfg.alpha) * p for p, q in zip(P, Q)])
    if kind == "jsd":
        M = [cfg.beta * p + (1 - cfg.beta) * q for p, q in zip(P, Q)]
        return cfg.beta * kl(P, M) + (1 - cfg.beta) * kl(Q, M)
    if kind == "tvd":
        return 0.5 * sum(abs(p - q) for p, q in zip(P, Q))
    assert kind == "akd"
    w = ref_head_weight([p.item() for p in P], [q.detach().item() for q in Q], n_tokens, cfg)
    return w * kl(P, Q) + (1 - w) * kl(Q, P)


def ref_head_weight(P, Q, n_tokens, cfg):
    order = sorted(range(n_tokens), key=lambda c: -P[c])  # stable: ties keep stored order
    head, mass = set(), 0.0
    for c in order:
        if mass >= cfg.mu:
            break
        head.add(c)
        mass += P[c]
    g_head = sum(abs(P[c] - Q[c]) for c in head)
    g_tail = sum(abs(P[c] - Q[c]) for c in range(len(P)) if c not in head)
    return g_head / (g_head + g_tail + cfg.eps)


def ref_softmax(z):
    e = torch.exp(z - z.max())
    return e / e.sum()


def ref_temper(P, T):
    scaled = [p ** (1 / T) for p in P]
    return [p / sum(scaled) for p in scaled]


def ref_loss(cfg, logits, targets, teacher_rows):
    """Mean over rows of the mixed loss; teacher_rows(r, q_full) -> (P, Q, n_tokens)."""
    total = 0.0
    for r in range(logits.shape[0]):
        P, Q, n_tokens = teacher_rows(r, ref_softmax(logits[r] / cfg.temperature))
        ce = -torch.log(ref_softmax(logits[r])[targets[r]]) if targets is not None else 0.0
        if cfg.kind == "ce":
            total = total + ce
            continue
        div = ref_divergence(cfg.kind, P, Q, n_tokens, cfg)
        total = total + (1 - cfg.ce_weight) * div + cfg.ce_weight * ce
    return total / logits.shape[0]


def ref_topk_loss(cfg, logits, ids, logprobs, mass, targets):
    def rows(r, q_full):
        kept = [(int(i), float(l)) for i, l in zip(ids[r], logprobs[r]) if i >= 0]
        P = [torch.tensor(math.exp(l), dtype=F64) for _, l in kept]
        P.append(torch.tensor(max(1 - float(mass[r]), cfg.eps), dtype=F64))
        Q = [q_full[i] for i, _ in kept]
        Q.append(torch.clamp(1 - sum(Q, torch.tensor(0.0, dtype=F64)), min=cfg.eps))
        if cfg.temperature != 1:
            P = ref_temper(P, cfg.temperature)
        return P, Q, len(kept)

    return ref_loss(cfg, logits, targets, rows)


def ref_dense_loss(cfg, logits, teacher_logprobs, targets):
    def rows(r, q_full):
        P = [torch.exp(l) for l in teacher_logprobs[r]]
        if cfg.temperature != 1:
            P = ref_temper(P, cfg.temperature)
        return P, list(q_full), len(P)

    return ref_loss(cfg, logits, targets, rows)


# ----------------------------------------------------------------------------- inputs
def make_case(n=6, vocab=13, k=4, hidden=5, dtype=F64, seed=0, pad_rows=(1, 4)):
    """Random student (hidden, weight, bias) and a teacher top-k cache with some -1 padding."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, dtype=dtype)
    w = torch.randn(vocab, hidden, generator=g, dtype=dtype)
    b = 0.1 * torch.randn(vocab, generator=g, dtype=dtype)
    teacher = (2.0 * torch.randn(n, vocab, generator=g, dtype=F64)).log_softmax(-1)
    logprobs, ids = teacher.topk(k, dim=-1)
    mass = logprobs.exp().sum(-1)
    for r in pad_rows:  # the last entry of these rows is padding
        if r < n:
            mass[r] -= logprobs[r, -1].exp()
            ids[r, -1], logprobs[r, -1] = -1, float("nan")
    targets = torch.multinomial(teacher.exp(), 1, generator=g).squeeze(1)
    return dict(h=h, w=w, b=b, teacher=teacher, ids=ids, logprobs=logprobs.to(dtype), mass=mass.to(dtype),
                targets=targets)


def configs_for(kind):
    yield LossConfig(kind=kind, chunk_size=4)
    if kind != "ce":
        yield LossConfig(kind=kind, chunk_size=4, ce_weight=0.3, temperature=2.0, mu=0.3)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_topk_loss_matches_reference(kind):
    c = make_case()
    logits = c["h"] @ c["w"].T + c["b"]
    for cfg in configs_for(kind):
        loss, stats = topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], c["targets"], cfg)
        expected = ref_topk_loss(cfg, logits, c["ids"], c["logprobs"], c["mass"], c["targets"])
        assert loss.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
        assert stats["loss"] == pytest.approx(loss.item())


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_dense_loss_matches_reference(kind):
    c = make_case()
    logits = c["h"] @ c["w"].T
    for cfg in configs_for(kind):
        loss, _ = dense_distill_loss(logits, c["teacher"], c["targets"], cfg)
        expected = ref_dense_loss(cfg, logits, c["teacher"], c["targets"])
        assert loss.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


def test_stats_report_the_batch():
    c = make_case()
    logits = c["h"] @ c["w"].T
    logits[:3] = c["teacher"][:3]  # these rows agree on the top-1 at least
    _, stats = topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], c["targets"])
    fkl = ref_topk_loss(LossConfig(kind="fkl"), logits, c["ids"], c["logprobs"], c["mass"], None)
    rkl = ref_topk_loss(LossConfig(kind="rkl"), logits, c["ids"], c["logprobs"], c["mass"], None)
    assert stats["fkl"] == pytest.approx(float(fkl)) and stats["rkl"] == pytest.approx(float(rkl))
    assert 0 < stats["head_weight"] < 1
    assert stats["teacher_topk_mass"] == pytest.approx(c["mass"].mean().item())
    q = logits.softmax(-1)
    student_mass = [sum(q[r, i] for i in c["ids"][r] if i >= 0) for r in range(len(q))]
    assert stats["student_topk_mass"] == pytest.approx(float(sum(student_mass) / len(q)))
    agree = (logits.argmax(-1) == c["teacher"].argmax(-1)).double().mean().item()
    assert agree >= 0.5 and stats["top1_agreement"] == pytest.approx(agree)
    assert stats["ce"] == pytest.approx(-q.log().gather(1, c["targets"][:, None]).mean().item())
    assert stats["tokens"] == 6
    _, fkl_stats = topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], None,
                                                 LossConfig(kind="fkl"))
    assert math.isnan(fkl_stats["head_weight"]) and math.isnan(fkl_stats["ce"])


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_topk_with_every_category_equals_dense(kind):
    c = make_case(k=13, pad_rows=())
    logits = (c["h"] @ c["w"].T).requires_grad_()
    cfg = LossConfig(kind=kind, temperature=1.5, ce_weight=0.2)
    topk, _ = topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], c["targets"], cfg)
    dense, _ = dense_distill_loss(logits, c["teacher"], c["targets"], cfg)
    assert topk.item() == pytest.approx(dense.item(), rel=1e-7, abs=1e-9)
    grads = [torch.autograd.grad(loss, logits)[0] for loss in (topk, dense)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_non_negative_and_zero_on_the_teacher_itself(kind):
    c = make_case(n=8, vocab=50, k=5, dtype=torch.float32, pad_rows=())
    cfg = LossConfig(kind=kind)
    logits = c["h"] @ c["w"].T
    dense_teacher = logits.log_softmax(-1)
    assert dense_distill_loss(logits, c["teacher"].float(), None, cfg)[0].item() >= 0
    assert abs(dense_distill_loss(logits, dense_teacher, None, cfg)[0].item()) < 1e-6
    logprobs, ids = dense_teacher.topk(5, dim=-1)
    mass = logprobs.exp().sum(-1)
    assert topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], None, cfg)[0].item() >= 0
    assert abs(topk_distill_loss_from_logits(logits, ids, logprobs, mass, None, cfg)[0].item()) < 1e-6


def test_jsd_endpoints_are_the_two_kls():
    c = make_case()
    logits = c["h"] @ c["w"].T
    args = (c["ids"], c["logprobs"], c["mass"], None)

    def value(**kw):
        return topk_distill_loss_from_logits(logits, *args, LossConfig(**kw))[0].item()

    assert value(kind="jsd", beta=0.0) == pytest.approx(value(kind="fkl"), rel=1e-12)
    assert value(kind="jsd", beta=1.0) == pytest.approx(value(kind="rkl"), rel=1e-12)
    assert value(kind="skl", alpha=0.0) == pytest.approx(value(kind="fkl"), rel=1e-12)
    assert value(kind="srkl", alpha=0.0) == pytest.approx(value(kind="rkl"), rel=1e-12)


def test_student_tail_is_accurate_when_tiny():
    """q_tail = 1e-6 in float32: a 1 - sum(q) formula would be off by ~10%."""
    vocab = 1000
    z = torch.full((1, vocab), -30.0, dtype=F64)
    z[0, :3] = torch.tensor([5.0, 4.0, 3.0], dtype=F64)
    z[0, 3:] = math.log(1e-6 / (vocab - 3)) + torch.logsumexp(z[0, :3], 0)
    exact = z.softmax(-1)[0, 3:].sum().item()
    ids = torch.tensor([[0, 1, 2]])
    student = StudentTopk(z.float(), ids, None, 1.0, 1e-8)
    assert student.log_q[0, -1].exp().item() == pytest.approx(exact, rel=1e-4)


# ----------------------------------------------------------------------------- AKD head set
def head_of(p_tokens, p_tail=None, mu=0.5, valid=None):
    log_p = torch.tensor([p_tokens + ([p_tail] if p_tail is not None else [])], dtype=F64).log()
    valid = None if valid is None else torch.tensor([valid + ([True] if p_tail is not None else [])])
    cats = Categories(log_p, log_p.clone(), valid, p_tail is not None)
    return head_mask(cats, mu)[0].tolist()


def test_akd_head_top1_above_mu_is_alone():
    assert head_of([0.1, 0.7, 0.15], p_tail=0.05) == [False, True, False, False]


def test_akd_head_takes_every_token_but_never_the_tail():
    assert head_of([0.2, 0.1, 0.05], p_tail=0.65) == [True, True, True, False]


def test_akd_head_includes_the_crossing_token():
    assert head_of([0.3, 0.15, 0.25, 0.1], p_tail=0.2) == [True, False, True, False, False]
    assert head_of([0.25, 0.25, 0.25], p_tail=0.25) == [True, True, False, False]  # reaching mu stops


def test_akd_head_ties_keep_stored_order_and_skip_padding():
    assert head_of([0.3, 0.3, 0.3], p_tail=0.1) == [True, True, False, False]
    assert head_of([0.2, 0.6, 0.1], p_tail=0.1, valid=[True, False, True]) == [True, False, True, False]
    assert head_of([0.3, 0.4, 0.3], mu=0.6) == [True, True, False]  # dense: no tail column


def test_akd_weight_from_the_head_gap():
    probs = torch.tensor([[0.6, 0.2, 0.1, 0.06, 0.04]], dtype=F64)
    student = torch.tensor([[0.3, 0.4, 0.1, 0.1, 0.1]], dtype=F64)
    ids = torch.tensor([[0, 1, 2]])
    _, stats = topk_distill_loss_from_logits(student.log(), ids, probs[:, :3].log(), probs[:, :3].sum(-1), None)
    gaps = [0.3, 0.2, 0.0, 0.1]  # head {0}; tail bucket 0.1 vs 0.2
    assert stats["head_weight"] == pytest.approx(gaps[0] / (sum(gaps) + 1e-8))


# ----------------------------------------------------------------------------- gradients
def gradcheck(fn, *inputs):
    """float64 gradcheck; fast mode checks a random projection of the Jacobian."""
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


@pytest.mark.parametrize("kind", [k for k in LOSS_KINDS if k != "akd"])
def test_gradcheck_topk_logits_hidden_and_dense_paths(kind):
    c = make_case(n=5, vocab=9, k=3, hidden=4)
    mix = 0.0 if kind == "ce" else 0.25
    configs = [LossConfig(kind=kind, chunk_size=2, ce_weight=mix, temperature=t) for t in (1.0, 1.7)]
    teacher = (c["ids"], c["logprobs"], c["mass"], c["targets"])
    leaves = tuple(c[name].clone().requires_grad_() for name in ("h", "w", "b"))
    logits = (c["h"] @ c["w"].T).requires_grad_()
    for cfg in configs:
        assert gradcheck(lambda x: topk_distill_loss_from_logits(x, *teacher, cfg)[0], logits)
        assert gradcheck(lambda x: dense_distill_loss(x, c["teacher"], c["targets"], cfg)[0], logits)
    assert gradcheck(lambda h, w, b: topk_distill_loss(h, w, *teacher, configs[1], lm_head_bias=b)[0], *leaves)


def test_gradcheck_tempered_without_targets():
    c = make_case(n=5, vocab=9, k=3)
    logits = (c["h"] @ c["w"].T).requires_grad_()
    cfg = LossConfig(kind="jsd", beta=0.3, temperature=0.7)
    teacher = (c["ids"], c["logprobs"], c["mass"], None)
    assert gradcheck(lambda x: topk_distill_loss_from_logits(x, *teacher, cfg)[0], logits)
    assert gradcheck(lambda x: dense_distill_loss(x, c["teacher"], None, cfg)[0], logits)


def test_akd_gradient_treats_the_weight_as_constant():
    """AKD's w is detached by design, so gradcheck (which differentiates w) does not apply."""
    c = make_case()
    h, w, b = (c[name].clone().requires_grad_() for name in ("h", "w", "b"))
    for cfg in (LossConfig(kind="akd", ce_weight=0.2, mu=0.4), LossConfig(kind="akd", temperature=1.3, chunk_size=4)):
        loss, _ = topk_distill_loss(h, w, c["ids"], c["logprobs"], c["mass"], c["targets"], cfg, lm_head_bias=b)
        ref = ref_topk_loss(cfg, h @ w.T + b, c["ids"], c["logprobs"], c["mass"], c["targets"])
        for got, want in zip(torch.autograd.grad(loss, (h, w, b)), torch.autograd.grad(ref, (h, w, b))):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    dense_logits = (c["h"] @ c["w"].T).requires_grad_()
    got = torch.autograd.grad(dense_distill_loss(dense_logits, c["teacher"], None, cfg.__class__(kind="akd"))[0],
                              dense_logits)[0]
    want = torch.autograd.grad(ref_dense_loss(LossConfig(kind="akd"), dense_logits, c["teacher"], None),
                               dense_logits)[0]
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 7])
def test_chunked_hidden_path_equals_unchunked_logits(chunk_size):
    c = make_case(n=10, pad_rows=(0, 9))
    h, w, b = (c[name].clone().requires_grad_() for name in ("h", "w", "b"))
    teacher = (c["ids"], c["logprobs"], c["mass"], c["targets"])
    cfg = LossConfig(kind="akd", ce_weight=0.1)
    chunked, stats = topk_distill_loss(h, w, *teacher, LossConfig(kind="akd", ce_weight=0.1, chunk_size=chunk_size),
                                       lm_head_bias=b)
    whole, whole_stats = topk_distill_loss_from_logits(h @ w.T + b, *teacher, cfg)
    assert chunked.item() == pytest.approx(whole.item(), rel=1e-12)
    assert stats == pytest.approx(whole_stats, rel=1e-12, nan_ok=True)
    for got, want in zip(torch.autograd.grad(chunked, (h, w, b)), torch.autograd.grad(whole, (h, w, b))):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_scaled_and_repeated_backward():
    """The stored gradient becomes .grad without a copy; reuse after an in-place edit raises."""
    c = make_case()
    w = c["w"].clone().requires_grad_()
    loss, _ = topk_distill_loss(c["h"], w, c["ids"], c["logprobs"], c["mass"], None)
    loss.backward(retain_graph=True)
    once = w.grad.clone()
    (3 * loss).backward(retain_graph=True)
    torch.testing.assert_close(w.grad, 4 * once)
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_low_precision_hidden_path_tracks_float32():
    c = make_case(n=12, vocab=40, k=6, hidden=16, dtype=torch.float32)
    teacher = (c["ids"], c["logprobs"], c["mass"], c["targets"], LossConfig(chunk_size=5))
    h32, w32 = c["h"].requires_grad_(), c["w"].requires_grad_()
    h16, w16 = c["h"].detach().bfloat16().requires_grad_(), c["w"].detach().bfloat16().requires_grad_()
    loss32, _ = topk_distill_loss(h32, w32, *teacher)
    loss16, _ = topk_distill_loss(h16, w16, *teacher)
    assert loss16.dtype == torch.float32 and loss16.item() == pytest.approx(loss32.item(), rel=0.05)
    loss32.backward()
    loss16.backward()
    assert h16.grad.dtype == w16.grad.dtype == torch.bfloat16
    for low, full in ((h16.grad, h32.grad), (w16.grad, w32.grad)):
        assert (low.float() - full).norm() < 0.05 * full.norm()



def test_autocast_head_gradient_is_written_by_chunks_not_added_to_zeros():
    """Under autocast the hidden states are bf16 and the head's master weight float32: its gradient
    is the chunks' bf16 products summed in float32, the padded rows exactly 0."""
    c = make_case(n=12, vocab=40, k=6, hidden=16, dtype=torch.float32)
    teacher = (c["ids"], c["logprobs"], c["mass"], c["targets"], LossConfig(chunk_size=5))
    h16 = c["h"].detach().bfloat16().requires_grad_()
    w_padded = torch.cat([c["w"].detach(), torch.ones(3, 16)]).requires_grad_()
    loss, _ = topk_distill_loss(h16, w_padded, *teacher, vocab_size=40)
    loss.backward()
    w32 = c["w"].detach().requires_grad_()
    topk_distill_loss(c["h"].detach(), w32, *teacher)[0].backward()
    assert w_padded.grad.dtype == torch.float32 and w_padded.grad[40:].abs().max() == 0
    assert (w_padded.grad[:40] - w32.grad).norm() < 0.05 * w32.grad.norm()
    poisoned = torch.full((4, 2), 7.0)  # what an uninitialised buffer may hold
    a, b = torch.ones(4, 3, dtype=torch.bfloat16), torch.ones(3, 2, dtype=torch.bfloat16)
    _write_or_add(poisoned, a, b, add=False)
    assert poisoned.eq(3).all()
    _write_or_add(poisoned, a, b, add=True)
    assert poisoned.eq(6).all()
    same = torch.full((4, 2), 7.0, dtype=torch.bfloat16)
    _write_or_add(same, a, b, add=False)
    assert same.eq(3).all()
    assert _rows_beyond(torch.ones(5, 2), 3)[3:].eq(0).all()


# ----------------------------------------------------------------------------- masking
def test_vocab_padding_gets_no_mass():
    c = make_case()
    h, w = c["h"].clone().requires_grad_(), c["w"].clone()
    w_padded = torch.cat([w, 5.0 * torch.ones(3, w.shape[1], dtype=F64)]).requires_grad_()
    teacher = (c["ids"], c["logprobs"], c["mass"], c["targets"])
    cfg = LossConfig(kind="akd", ce_weight=0.5)
    padded, _ = topk_distill_loss(h, w_padded, *teacher, cfg, vocab_size=13)
    plain, _ = topk_distill_loss_from_logits(h @ w.T, *teacher, cfg)
    assert padded.item() == pytest.approx(plain.item(), rel=1e-12)
    padded.backward()
    assert w_padded.grad[13:].abs().max() == 0 and w_padded.grad[:13].abs().max() > 0
    logits = torch.cat([h @ w.T, torch.full((6, 3), 50.0, dtype=F64)], dim=1).detach()
    dense, _ = dense_distill_loss(logits, torch.cat([c["teacher"], torch.zeros(6, 3, dtype=F64)], 1), None,
                                  cfg.__class__(kind="rkl"), vocab_size=13)
    assert dense.item() == pytest.approx(dense_distill_loss(logits[:, :13], c["teacher"], None,
                                                            LossConfig(kind="rkl"))[0].item())


def test_padding_entries_are_ignored():
    c = make_case(pad_rows=())
    logits = c["h"] @ c["w"].T
    pad_ids = torch.cat([c["ids"], torch.full((6, 2), -1)], dim=1)
    pad_logprobs = torch.cat([c["logprobs"], torch.zeros(6, 2, dtype=F64)], dim=1)
    for kind in DIVERGENCES:
        cfg = LossConfig(kind=kind)
        padded, _ = topk_distill_loss_from_logits(logits, pad_ids, pad_logprobs, c["mass"], None, cfg)
        plain, _ = topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], None, cfg)
        assert padded.item() == pytest.approx(plain.item(), rel=1e-12), kind


def test_bad_input_is_named():
    c = make_case(pad_rows=())
    logits = c["h"] @ c["w"].T
    dup = c["ids"].clone()
    dup[2, 1] = dup[2, 0]
    with pytest.raises(LossInputError, match="topk_ids row 2 repeats"):
        topk_distill_loss_from_logits(logits, dup, c["logprobs"], c["mass"], None)
    with pytest.raises(LossInputError, match="outside"):
        topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], None, vocab_size=3)
    with pytest.raises(LossInputError, match="topk_mass row 0 is outside"):
        topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"] + 1, None)
    with pytest.raises(LossInputError, match="pass vocab_size"):
        dense_distill_loss(logits, c["teacher"][:, :-1], None)
    with pytest.raises(LossInputError, match="needs target_ids"):
        topk_distill_loss_from_logits(logits, c["ids"], c["logprobs"], c["mass"], None, LossConfig(kind="ce"))
    with pytest.raises(LossInputError, match="loss kind 'kl'"):
        LossConfig(kind="kl")
    with pytest.raises(LossInputError, match="mu"):
        LossConfig(mu=0.0)
    empty, stats = topk_distill_loss_from_logits(logits[:0], c["ids"][:0], c["logprobs"][:0], c["mass"][:0], None)
    assert empty.item() == 0 and stats["tokens"] == 0
