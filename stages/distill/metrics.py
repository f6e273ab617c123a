"""metrics.jsonl and the PNG plots of a run.

Each record is one line: {"split": "train" | "eval", "step": ..., ...}. On resume the file
is rewritten from the checkpoint's records, so lines of a killed segment disappear.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


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


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(records: list[dict], out_dir) -> list[Path]:
    """losses.png (train loss, eval FKL/RKL/NLL), head_weight.png, lr.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    figures = {
        "losses.png": ("loss (nats/token)", [(train, "loss", "train loss"), (evals, "eval_fkl", "eval FKL"),
                                             (evals, "eval_rkl", "eval RKL"), (evals, "eval_loss", "eval loss")]),
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
