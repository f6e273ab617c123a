"""Throughput and per-program overhead of the evaluation sandbox.

(a) the 164 canonical HumanEval programs through Sandbox.run_many (one worker per core):
    tasks/s and all-passed check;
(b) latency of one trivial program, sequentially: a bare `python -I -c pass` subprocess,
    the sandbox with resource limits only, and the full namespace jail (where available).
    The difference is the sandbox's overhead per task.

    .venv/bin/python benchmarks/bench_sandbox.py --repeats 40
Writes bench-results/sandbox.json and prints a summary.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.allocator import describe as describe_allocator  # noqa: E402

from stages.evaluate.datasets import load_tasks  # noqa: E402
from stages.evaluate.sandbox import Sandbox  # noqa: E402


def _latencies_ms(variants: dict, repeats: int) -> dict:
    """Per-variant latency, the variants interleaved round-robin so that load from other
    processes on the machine falls on all of them alike."""
    times = {name: [] for name in variants}
    for run_once in variants.values():
        run_once()  # warm the page cache
    for _ in range(repeats):
        for name, run_once in variants.items():
            start = time.perf_counter()
            run_once()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: {"median_ms": round(statistics.median(t), 2), "min_ms": round(min(t), 2),
                   "repeats": repeats} for name, t in times.items()}


def _bare() -> None:
    subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)


def _throughput(data_dir: Path | None) -> dict:
    tasks = load_tasks("humaneval", data_dir=data_dir)
    sandbox = Sandbox(trust_model_code=True)  # the reference solutions
    programs = [t.program(t.reference) for t in tasks]
    start = time.perf_counter()
    results = sandbox.run_many(programs)
    seconds = time.perf_counter() - start
    return {"tasks": len(tasks), "passed": sum(r.passed for r in results),
            "seconds": round(seconds, 2), "tasks_per_s": round(len(tasks) / seconds, 2),
            "workers": sandbox.workers, "isolation": sandbox.isolation}


@click.command()
@click.option("--repeats", default=40, show_default=True, help="sequential runs per variant")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--out", default=str(ROOT / "bench-results" / "sandbox.json"), show_default=True)
def main(repeats, data_dir, out):
    variants, unavailable = {"bare_subprocess": _bare}, {}
    for isolation in ("rlimits", "namespaces"):
        sandbox = Sandbox(workers=1, isolation="rlimits" if isolation == "rlimits" else "auto",
                          trust_model_code=True)  # runs only `pass`
        if sandbox.isolation == isolation:
            variants[isolation] = lambda sandbox=sandbox: sandbox.run("pass")
        else:
            unavailable[isolation] = sandbox.isolation_reason
    latency = _latencies_ms(variants, repeats)
    bare = latency["bare_subprocess"]["median_ms"]
    overhead = {k: round(v["median_ms"] - bare, 2) for k, v in latency.items()
                if k != "bare_subprocess"}
    results = {"cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "allocator": describe_allocator(),
               "humaneval_canonical": _throughput(data_dir),
               "latency_per_program": latency, "overhead_ms_vs_bare": overhead,
               "unavailable": unavailable}
    results["load_avg_1min_after"] = os.getloadavg()[0]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    click.echo(json.dumps(results, indent=2))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
