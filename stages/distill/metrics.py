"""A step's training statistics, metrics.jsonl and the PNG plots of a run.

Each record is one line: {"split": "train" | "eval", "step": ..., ...}. On resume the file
is rewritten from the checkpoint's records, so lines of a killed segment disappear.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import distributed
from .run_folder import METRICS_FILE

# the loss's statistics a train record holds: means over the step's response tokens
TRAIN_STATS = ("loss", "fkl", "rkl", "head_weight", "top1_agreement", "ce", "teacher_topk_mass",
               "student_topk_mass")


class StepStats:
    """Token-weighted sums of one optimizer step's loss statistics, float64 [len(TRAIN_STATS)],
    kept where the loss left them: adding a micro-batch never reads a device value back, so
    the trainer can wait until a logging step to sum them over ranks and read them once.
    The loss may hand its statistics as Python numbers (summed on the host, as today's loss
    does) or as tensors (summed on their device)."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None

    def add(self, stats: dict) -> None:
        weighted = _as_vector([stats[name] for name in TRAIN_STATS]) * stats["tokens"]
        self.sums = weighted if self.sums is None else self.sums + weighted

    @property
    def loss_sum(self) -> torch.Tensor:
        """Sum of loss x tokens: NaN or infinite whenever one micro-batch's loss was."""
        return self.sums[TRAIN_STATS.index("loss")]

    @staticmethod
    def means(sums: list[float], tokens: float) -> dict:
        """The train record's statistics from sums already added over ranks."""
        return {name: value / tokens for name, value in zip(TRAIN_STATS, sums)}


class NonFiniteWatch:
    """The first step at which this rank's loss or gradient norm was not finite, noted on the
    device without reading it back. A step that reads its statistics back learns, through
    flags() in its all-reduce, whether any rank saw one; only then are the details gathered."""

    WHAT = ("loss", "gradient norm")  # the order the loop meets them in within a step

    def __init__(self) -> None:
        self.first: list[torch.Tensor | None] = [None] * len(self.WHAT)  # each [step, value]; step 0: none yet

    def note(self, step: int, *values: torch.Tensor) -> None:
        for i, value in enumerate(values):
            value = value.detach().to(torch.float64).reshape(())
            if self.first[i] is None:
                self.first[i] = torch.zeros(2, dtype=torch.float64, device=value.device)
            fresh = (self.first[i][0] == 0) & ~torch.isfinite(value)
            self.first[i] = torch.where(fresh, torch.stack([torch.full_like(value, step), value]), self.first[i])

    def flags(self, device) -> torch.Tensor:
        """[len(WHAT)] float64: 1 where this rank has seen that value non-finite."""
        return torch.cat([(first[:1] > 0).to(device, torch.float64) for first in self.first])

    def first_failure(self, env) -> tuple[int, str, float, int]:
        """(step, what, value, ranks) of the earliest non-finite value on any rank. Collective."""
        per_rank = distributed.gather_objects(env, [first.tolist() for first in self.first])
        seen = [(int(step), order, value) for noted in per_rank for order, (step, value) in enumerate(noted) if step]
        step, order, value = min(seen, key=lambda s: s[:2])  # the lowest rank's value at that check
        ranks = sum(1 for s in seen if s[:2] == (step, order))
        return step, self.WHAT[order], value, ranks


def _as_vector(values: list) -> torch.Tensor:
    tensors = [v for v in values if torch.is_tensor(v)]
    if not tensors:
        return torch.tensor(values, dtype=torch.float64)
    device = tensors[0].device
    return torch.stack([torch.as_tensor(v, device=device).detach().to(torch.float64).reshape(()) for v in values])


def pool_eval(per_cache: list[dict]) -> dict:
    """The metrics of several held-out slices as one: means weighted by their tokens."""
    if len(per_cache) == 1:
        return dict(per_cache[0])
    tokens = sum(m["eval_tokens"] for m in per_cache)
    pooled = {"eval_tokens": tokens}
    for key in per_cache[0]:
        if key != "eval_tokens":
            pooled[key] = (sum(m[key] * m["eval_tokens"] for m in per_cache if m["eval_tokens"]) / tokens
                           if tokens else float("nan"))
    return pooled


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON
    return value


class MetricsLog:
    def __init__(self, run_dir, records: list[dict] | None = None, enabled: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.records = list(records or [])
        self.enabled = enabled
        if enabled:
            with open(self.path, "w") as fh:
                for record in self.records:
                    fh.write(json.dumps(record) + "\n")

    def add(self, record: dict) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        self.records.append(record)
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def last(self, split: str) -> dict:
        for record in reversed(self.records):
            if record["split"] == split:
                return record
        return {}


def plot_metrics(records: list[dict], out_dir) -> list[Path]:
    """losses.png (train loss, eval FKL/RKL/NLL, each cache's eval FKL), head_weight.png, lr.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    per_cache = sorted({key for r in evals for key in r if key.startswith("eval_fkl/")})  # a mix of caches
    figures = {
        "losses.png": ("loss (nats/token)", [(train, "loss", "train loss"), (evals, "eval_fkl", "eval FKL"),
                                             (evals, "eval_rkl", "eval RKL"), (evals, "eval_loss", "eval loss"),
                                             *[(evals, key, f"eval FKL, {key.split('/', 1)[1]}")
                                               for key in per_cache]]),
        "head_weight.png": ("AKD head weight w", [(train, "head_weight", "train (mean over tokens)")]),
        "lr.png": ("learning rate", [(train, "lr", "lr")]),
    }
    written = []
    for name, (ylabel, series) in figures.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for rows, key, label in series:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=label, marker="o" if rows is evals else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(out_dir) / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
