"""The report's figures: pass@1 bars (the evaluation stage's chart) and training curves of
every run on shared axes, so methods can be compared at a glance."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_pass_at_1(table: list[dict], path: Path) -> Path | None:
    """Every model scored on the test split: pass@1 bars and accuracy loss (study/chart.py)."""
    from study.engine.chart import bar_chart

    rows = [r for r in table if all(r["pass@1"].get(b) is not None for b in ("humaneval", "mbpp"))]
    if not rows:
        return None
    bar_chart(rows, path)
    return path


def plot_speed(rows: list[dict], path: Path) -> Path:
    """Parameters, pass@1 (HumanEval + MBPP test) and tokens/s, one bar group a model; the speed
    panel has the fixed-length decode tokens/s (solid) and the evaluation's (hatched, confounded
    by answer length) side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    names = [r["model"] for r in rows]
    x = np.arange(len(rows))
    colors = ["#555555" if n == "teacher" else "#4f81bd" for n in names]
    for ax, key, title, scale in ((axes[0], "parameters", "parameters (M)", 1e-6),
                                  (axes[1], "pass@1", "pass@1, HumanEval + MBPP test (%)", 100)):
        _bars(ax, x, _values(rows, key, scale), 0.6, colors, "{:.0f}" if key != "pass@1" else "{:.1f}")
        ax.set_title(title)
    speed = axes[2]
    fixed = _values(rows, "fixed_tokens_per_s", 1)
    _bars(speed, x - 0.2, fixed, 0.38, colors, "{:.0f}", label="fixed length (akd speed)")
    _bars(speed, x + 0.2, _values(rows, "eval_tokens_per_s", 1), 0.38, colors, "{:.0f}", hatch="//", alpha=0.45,
          label="evaluation (confounded by answer length)")
    speed.set_title("tokens/s" + ("" if any(v == v for v in fixed) else " (fixed length not measured yet)"))
    speed.legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _values(rows: list[dict], key: str, scale: float) -> list[float]:
    return [float("nan") if r.get(key) is None else r[key] * scale for r in rows]


def _bars(ax, x, values, width, colors, fmt, **style) -> None:
    ax.bar(x, values, width, color=colors, **style)
    for xi, v in zip(x, values):
        if v == v:
            ax.annotate(fmt.format(v), (xi, v), ha="center", va="bottom", fontsize=8)


def plot_recovery(rows: list[dict], path: Path) -> Path:
    """The smaller student's recovery: held-out FKL and pass@1 against training tokens seen."""
    fig, (fkl_ax, pass_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        if row["curve"]:
            fkl_ax.plot([p["tokens_seen"] for p in row["curve"]], [p["fkl"] for p in row["curve"]],
                        marker="o", label=row["run"])
        points = [p for p in row["pass@1"] if p["tokens_seen"] is not None and p["pass@1"] is not None]
        if points:
            pass_ax.plot([p["tokens_seen"] for p in points], [100 * p["pass@1"] for p in points],
                         marker="s", label=row["run"])
    fkl_ax.set(title="held-out FKL(teacher || student), log scale", xlabel="training tokens seen",
               yscale="log")
    bench = ", ".join(rows[0]["benchmarks"]) if rows else ""
    pass_ax.set(title=f"pass@1 ({bench}): before, midpoint, end", xlabel="training tokens seen",
                ylabel="pass@1 (%)")
    for ax in (fkl_ax, pass_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
            if all(r.get("head_weight") is not None for r in train):  # AKD's runs
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
