"""What the rounds achieved, one row per round: held-out fidelity before and after each
round's training (its run's metrics.jsonl), pass@1 where evaluated, and the wall time of
each step. Written as OUT_DIR/summary.json, summary.md and heldout_fkl.png.

Each round's held-out set is a slice of that round's own cache: the student that starts the
round, on its own answers, scored by the teacher. "Before" is that student, "after" is the
same student trained on the rest of the round's cache.
"""
from __future__ import annotations

import json
from pathlib import Path

from stages.evaluate.eval_folder import read_summary as read_eval_summary
from stages.teacher.responses_file import HEADER_NAME as RESPONSES_HEADER
from study.onpolicy.rounds import OnPolicyConfig, Round, original_eval_dir, rounds_of
from study.engine.results import heldout_fidelity, load_metrics
from study.engine.runner import read_record

SUMMARY_JSON, SUMMARY_MD, FKL_PLOT = "summary.json", "summary.md", "heldout_fkl.png"


def rounds_summary(config: OnPolicyConfig) -> dict:
    rows = [_round_row(config, round_) for round_ in rounds_of(config)]
    return {"out_dir": str(config.root), "teacher": config.teacher, "student": config.student,
            "loss": config.loss, "offpolicy_cache": config.offpolicy_cache or None,
            "onpolicy_fraction": config.onpolicy_fraction if config.offpolicy_cache else 1.0,
            "original_pass@1": _pass_at_1(original_eval_dir(config)), "rounds": rows}


def write_summary(config: OnPolicyConfig) -> dict:
    summary = rounds_summary(config)
    root = config.root
    (root / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    (root / SUMMARY_MD).write_text(summary_markdown(summary))
    plot_heldout_fkl({r.number: load_metrics(r.run) for r in rounds_of(config)}, config.steps,
                     root / FKL_PLOT)
    return summary


def summary_markdown(summary: dict) -> str:
    lines = [f"# On-policy distillation: {summary['student']} from {summary['teacher']} "
             f"({summary['loss']})", ""]
    if summary["offpolicy_cache"]:
        lines += [f"Each round mixes in `{summary['offpolicy_cache']}` (on-policy share "
                  f"{summary['onpolicy_fraction']}).", ""]
    if summary["original_pass@1"]:
        lines += [f"Original student pass@1: {_format_pass(summary['original_pass@1'])}", ""]
    lines += ["| round | rows | held-out tokens | FKL before -> after | top-1 agreement before -> after "
              "| pass@1 after | wall: rollout / score / train |",
              "|---|---|---|---|---|---|---|"]
    for row in summary["rounds"]:
        fid = row["fidelity"]
        fkl = f"{fid['before']['fkl']:.4f} -> {fid['after']['fkl']:.4f}" if fid else "not trained"
        top1 = (f"{fid['before']['top1_agreement']:.3f} -> {fid['after']['top1_agreement']:.3f}"
                if fid else "")
        walls = " / ".join(_minutes(row["wall_s"].get(k)) for k in ("rollout", "score", "train"))
        lines.append(f"| {row['round']} | {row['rows'][0]}-{row['rows'][1] - 1} | "
                     f"{fid['tokens'] if fid else ''} | {fkl} | {top1} | "
                     f"{_format_pass(row['pass@1']) if row['pass@1'] else ''} | {walls} |")
    lines += ["", "Before: the student that starts the round, on a held-out slice of its own "
                  "answers scored by the teacher; after: the same student once trained on the "
                  "rest of that round's cache.", ""]
    return "\n".join(lines)


def plot_heldout_fkl(runs: dict[int, list[dict]], steps_per_round: int, path: Path) -> Path:
    """Held-out FKL of every round's evaluations on one axis of cumulative steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for number, records in sorted(runs.items()):
        evals = [r for r in records if r.get("split") == "eval" and r.get("eval_fkl") is not None]
        if evals:
            ax.plot([(number - 1) * steps_per_round + r["step"] for r in evals],
                    [r["eval_fkl"] for r in evals], marker="o", label=f"round {number}")
    ax.set(title="held-out FKL(teacher || student), each round on its own rollouts",
           xlabel="training step (all rounds)", ylabel="FKL (nats/token)")
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _round_row(config: OnPolicyConfig, round_: Round) -> dict:
    walls = {}
    for kind in ("rollout", "score", "train", "eval"):
        record = read_record(config.root, f"{kind}-{round_.number}") or {}
        walls[kind] = record.get("wall_s") if record.get("status") == "done" else None
    return {"round": round_.number, "student": round_.student,
            "rows": [round_.offset, round_.offset + config.prompts], "run_dir": str(round_.run),
            "responses": _responses(round_.rollouts), "fidelity": heldout_fidelity(round_.run),
            "pass@1": _pass_at_1(round_.eval_dir), "wall_s": walls}


def _responses(folder: Path) -> int | None:
    header = folder / RESPONSES_HEADER
    if not header.exists():
        return None
    return sum(shard["rows"] for shard in json.loads(header.read_text())["shards"])


def _pass_at_1(eval_dir: Path) -> dict | None:
    summary = read_eval_summary(eval_dir)
    if summary is None:
        return None
    return {name: scores.get("pass@1") for name, scores in summary["benchmarks"].items()}


def _format_pass(scores: dict) -> str:
    return ", ".join(f"{name} {100 * value:.1f}%" for name, value in scores.items() if value is not None)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"
