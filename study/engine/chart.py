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


def recovery_chart(recovery: list[dict], fidelity: dict[str, dict], path: Path) -> None:
    """Grid v3's figure: the pruned student's recovery (held-out FKL against training tokens, and
    pooled sampled pass@1 before and after, per loss), and every finished run on the FKL/RKL plane
    (the front AKD should lie on). `recovery`: the report's rows (arm, curve, pass_rate_a/_b);
    `fidelity`: arm -> results.heldout_fidelity of its run."""
    fig, (curves, passes, front) = plt.subplots(1, 3, figsize=(15, 4.5))
    for row in recovery:
        tokens = [p["tokens_seen"] / 1e6 for p in row["curve"]]
        curves.plot(tokens, [p["fkl"] for p in row["curve"]], marker="o", label=row["arm"])
        passes.plot([0, tokens[-1]], [100 * row["pass_rate_b"], 100 * row["pass_rate_a"]], marker="o",
                    label=row["arm"])
    curves.set(xlabel="training tokens seen (M)", ylabel="held-out FKL to the teacher (nats/token)",
               title="pruned student: held-out FKL")
    passes.set(xlabel="training tokens seen (M)", ylabel="pass@1, sampled, pooled (%)",
               title="pruned student: pass@1 before and after")
    for arm, f in sorted(fidelity.items()):
        after = f["after"]
        if after.get("fkl") is not None and after.get("rkl") is not None:
            marker = "s" if arm.startswith("small-") else "o"
            front.scatter(after["fkl"], after["rkl"], marker=marker, color="#c0504d" if arm.endswith("akd") else "#4f81bd")
            front.annotate(arm, (after["fkl"], after["rkl"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    front.set(xlabel="held-out FKL (nats/token)", ylabel="held-out RKL (nats/token)",
              title="every run after training (square: pruned)")
    for ax in (curves, passes, front):
        ax.grid(alpha=0.3)
    for ax in (curves, passes):
        if recovery:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
