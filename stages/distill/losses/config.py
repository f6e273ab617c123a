"""What a distillation loss is asked to compute, and how bad input is reported."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import setting

LOSS_KINDS = ("fkl", "rkl", "akd", "skl", "srkl", "jsd", "tvd", "ce")


class LossInputError(ValueError):
    """A loss got tensors or options it cannot use; the message names the culprit."""


@dataclass(frozen=True)
class LossConfig:
    """Options of one distillation loss; a distill run holds one (DistillConfig.loss) and
    records it in its config.json. Each field is also a command-line option (flag beside it)."""

    kind: str = setting("akd", "The loss: fkl, rkl, akd, skl, srkl, jsd, tvd or ce.", choices=LOSS_KINDS,
                        flag="--loss")
    mu: float = setting(0.5, "AKD head mass threshold (AKL's mu), in (0, 1].")
    alpha: float = setting(0.1, "Skew of SKL / SRKL (DistiLLM), in [0, 1].")
    beta: float = setting(0.5, "GKD's generalised-JSD coefficient, in [0, 1]; 0 is FKL, 1 is RKL.")
    ce_weight: float = setting(0.0, "loss = (1 - ce_weight) x divergence + ce_weight x CE on the teacher's "
                                    "tokens, in [0, 1]; --loss ce is pure CE.")
    temperature: float = setting(1.0, "KD temperature applied to teacher and student (not to CE); no T^2 factor.")
    chunk_size: int = setting(256, "Response positions per loss chunk: bounds the float32 [chunk, vocab] "
                                   "working set.", flag="--loss-chunk-size")
    # not an option: a numerical floor, recorded in config.json with the rest
    eps: float = setting(1e-8, "Floor of both tail buckets and of the AKD weight denominator.", cli=False)

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise LossInputError(f"loss kind {self.kind!r} is not one of {LOSS_KINDS}")
        _check_range("mu", self.mu, 0.0, 1.0, low_open=True)
        _check_range("alpha", self.alpha, 0.0, 1.0)
        _check_range("beta", self.beta, 0.0, 1.0)
        _check_range("ce_weight", self.ce_weight, 0.0, 1.0)
        if not self.temperature > 0:
            raise LossInputError(f"loss temperature must be > 0, got {self.temperature}")
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise LossInputError(f"loss chunk_size must be a positive integer, got {self.chunk_size}")
        if not 0 < self.eps < 1e-2:
            raise LossInputError(f"loss eps must be in (0, 0.01), got {self.eps}")

    @property
    def needs_targets(self) -> bool:
        return self.kind == "ce" or self.ce_weight > 0


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    below = value <= low if low_open else value < low
    if below or value > high:
        bracket = "(" if low_open else "["
        raise LossInputError(f"loss {name} must be in {bracket}{low}, {high}], got {value}")
