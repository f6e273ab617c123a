"""The report's figures: pass@1 bars (the evaluation stage's chart) and training curves of
every run on shared axes, so methods can be compared at a glance."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_pass_at_1(table: list[dict], path: Path) -> Path:
    from study.chart import bar_chart

    bar_chart(table, path)
    return path


def plot_training(runs: dict[str, list[dict]], out_dir: Path, smooth: int = 20) -> dict[str, Path]:
    """curves.png (train loss, moving average; held-out FKL) and head_weight.png."""
    curves, heads = Path(out_dir) / "training_curves.png", Path(out_dir) / "head_weight.png"
    fig, (train_ax, eval_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    head_fig, head_ax = plt.subplots(figsize=(6.5, 4.5))
    for name, records in sorted(runs.items()):
        train = [r for r in records if r.get("split") == "train"]
        evals = [r for r in records if r.get("split") == "eval"]
        if train:
            steps = [r["step"] for r in train]
            train_ax.plot(steps, _moving_average([r["loss"] for r in train], smooth), label=name)
            if name.endswith("-akd"):
                head_ax.plot(steps, _moving_average([r["head_weight"] for r in train], smooth), label=name)
        if evals:
            eval_ax.plot([r["step"] for r in evals], [r["eval_fkl"] for r in evals], marker="o", label=name)
    train_ax.set(title=f"train loss (own objective, moving average of {smooth}), log scale", xlabel="step")
    # log scales: the pruned student starts ~50x further from the teacher than the full one
    train_ax.set_yscale("log")
    eval_ax.set(title="held-out FKL(teacher || student), log scale", xlabel="step", yscale="log")
    head_ax.set(title="AKD head weight w (moving average)", xlabel="step", ylim=(0, 1))
    for ax in (train_ax, eval_ax, head_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(curves, dpi=110)
    head_fig.tight_layout()
    head_fig.savefig(heads, dpi=110)
    plt.close(fig)
    plt.close(head_fig)
    return {"training_curves": curves, "head_weight": heads}


def _moving_average(values: list[float], width: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or width <= 1:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):  # trailing window, shorter at the start
        lo = max(0, i + 1 - width)
        out[i] = (cumulative[i + 1] - cumulative[lo]) / (i + 1 - lo)
    return out
