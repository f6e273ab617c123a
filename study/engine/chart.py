"""The report's figure: pass@1 per benchmark and mean accuracy loss, one bar group per run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def bar_chart(rows: list[dict], path: Path) -> None:
    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) + 4), 4.5))
    width = 0.38
    for i, (bench, label) in enumerate((("humaneval", "HumanEval"), ("mbpp", "MBPP"))):
        values = [_num(r["pass@1"][bench]) for r in rows]
        left.bar(x + (i - 0.5) * width, values, width, label=label)
    left.set_ylabel("pass@1 (%)")
    left.set_title("pass@1 (greedy)")
    left.legend()
    losses = [_num(r["accuracy_loss"]["mean"]) for r in rows]
    right.bar(x, losses, 0.6, color=["#555555" if r["role"] == "teacher" else "#c0504d"
                                     for r in rows])
    right.set_ylabel("accuracy loss vs teacher (%)")
    right.set_title("mean accuracy loss (HumanEval, MBPP)")
    for ax in (left, right):
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _num(value: float | None) -> float:
    return float("nan") if value is None else 100 * value
