"""How differently one model answers on two machines: the churn between two exported sample sets.

Greedy decoding is deterministic on one machine, but two CPU classes compute differently (bf16
kernels on AVX-512 BF16 or AMX, float32 where bf16 is emulated), so the same model may write
other answers, and pass other tasks. Given two folders written by `akd eval-export` (or the
samples/<model>/ folders the experiment reports commit), this counts, per benchmark and pooled,
over the tasks and samples both hold: the answers that are byte-identical, the answers whose
verdict flips each way, both pass rates and McNemar's exact p of the difference, and the paired
t-test on per-task pass rates (the grid's own test; for sampled evaluations).

    .venv/bin/python benchmarks/sample_churn.py A_FOLDER B_FOLDER [--out churn.json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.evaluate.export import read_samples  # noqa: E402
from study.engine.stats import compare_rates, mcnemar  # noqa: E402


def load(folder: Path) -> dict[str, dict[tuple[str, int], dict]]:
    """{file stem: {(task, sample): row}} of an exported sample folder (its samples.json index)."""
    index = json.loads((folder / "samples.json").read_text())
    return {name.removesuffix(".jsonl.gz"): {(r["task_id"], r["sample"]): r for r in read_samples(folder / name)}
            for name in index["files"]}


def churn(a: dict[tuple[str, int], dict], b: dict[tuple[str, int], dict]) -> dict:
    shared = sorted(set(a) & set(b))
    passed_a = {f"{t}#{i}": a[(t, i)]["passed"] for t, i in shared}
    passed_b = {f"{t}#{i}": b[(t, i)]["passed"] for t, i in shared}
    test = mcnemar(passed_a, passed_b)
    return {"samples": len(shared),
            "identical_solutions": sum(a[k]["solution"] == b[k]["solution"] for k in shared),
            "pass_a": sum(passed_a.values()), "pass_b": sum(passed_b.values()),
            "only_a_passes": sum(passed_a[k] and not passed_b[k] for k in passed_a),
            "only_b_passes": sum(passed_b[k] and not passed_a[k] for k in passed_a),
            "mcnemar_p": test["p_value"], "per_task_rates": _rates_compared(a, b, shared)}


def _rates_compared(a: dict, b: dict, shared: list) -> dict:
    """The paired test the grid decides with (per-task pass rates over the task's samples): does the
    machine move the rate itself, beyond which answers it writes?"""
    def rates(side: dict) -> dict[str, float]:
        by_task: dict[str, list[bool]] = {}
        for task, i in shared:
            by_task.setdefault(task, []).append(side[(task, i)]["passed"])
        return {task: sum(v) / len(v) for task, v in by_task.items()}

    result = compare_rates(rates(a), rates(b))
    return {k: result[k] for k in ("n_tasks", "pass_rate_a", "pass_rate_b", "diff", "se", "p_value")}


@click.command()
@click.argument("a_folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("b_folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the figures as JSON.")
def main(a_folder: Path, b_folder: Path, out: Path | None) -> None:
    a, b = load(a_folder), load(b_folder)
    per_file = {name: churn(a[name], b[name]) for name in sorted(set(a) & set(b))}
    if not per_file:
        raise SystemExit(f"{a_folder} and {b_folder} share no benchmark file")
    def pooled(rows: dict) -> dict:  # every file's rows in one set, task ids prefixed by their file
        return {(f"{name}/{task}", i): row for name in per_file for (task, i), row in rows[name].items()}

    record = {"a": str(a_folder), "b": str(b_folder), "per_benchmark": per_file,
              "pooled": churn(pooled(a), pooled(b))}
    for name, row in [*per_file.items(), ("pooled", record["pooled"])]:
        flips = row["only_a_passes"] + row["only_b_passes"]
        print(f"{name}: {row['samples']} answers, {row['identical_solutions']} identical "
              f"({row['identical_solutions'] / row['samples']:.1%}); passed {row['pass_a']} vs {row['pass_b']}; "
              f"{flips} verdicts flip ({row['only_a_passes']} only A, {row['only_b_passes']} only B), "
              f"McNemar p = {row['mcnemar_p']:.2g}; per-task rates {row['per_task_rates']['pass_rate_a']:.1%} vs "
              f"{row['per_task_rates']['pass_rate_b']:.1%} over {row['per_task_rates']['n_tasks']} tasks "
              f"({100 * row['per_task_rates']['diff']:+.2f} pts, SE {100 * row['per_task_rates']['se']:.2f}, "
              f"p = {row['per_task_rates']['p_value']:.2g})")
    if out:
        out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
