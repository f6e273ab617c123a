"""Training-step time under each memory allocator: glibc malloc as it starts, glibc with the
mmap/trim thresholds raised (what akd falls back to), and tcmalloc preloaded (what akd installs).

An allocator is fixed when a process starts, so each variant runs in its own process, in
turns (A B C, A B C, ...) so that load from other jobs falls on every variant alike. Each
process times --steps AKD training steps (after one warm-up) of bench_distill's student:
Qwen2.5-Coder-0.5B's width and 151,936-token vocabulary with --layers decoder layers, float32
master weights, bf16 autocast, fused AdamW, on the same synthetic 2 x 256-token batch.

    .venv/bin/python benchmarks/bench_allocator.py    # ~3 minutes on 2 cores, ~5 GiB
Writes bench-results/allocator.json: per variant the allocator line each process logged and
the median step time over all its rounds, and the load average beside them.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.allocator import (GLIBC_MMAP_THRESHOLD_MAX, KNOWN_ALLOCATORS, describe,  # noqa: E402
                                 find_tcmalloc, glibc_settings)

MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def variant_envs(environ=os.environ) -> dict[str, dict[str, str]]:
    """Each variant's full environment: the caller's, stripped of any allocator setting, plus
    that variant's own."""
    base = {k: v for k, v in environ.items() if k not in MALLOC_VARIABLES}
    preload = [p for p in base.pop("LD_PRELOAD", "").split(":")
               if p and not any(Path(p).name.startswith(lib) for lib in KNOWN_ALLOCATORS)]
    if preload:
        base["LD_PRELOAD"] = ":".join(preload)
    envs = {"glibc_default": base, "glibc_raised": {**base, **glibc_settings()}}
    if int(glibc_settings()["MALLOC_MMAP_THRESHOLD_"]) != GLIBC_MMAP_THRESHOLD_MAX:
        envs["glibc_raised_mmap_32MiB"] = {**envs["glibc_raised"],
                                           "MALLOC_MMAP_THRESHOLD_": str(GLIBC_MMAP_THRESHOLD_MAX)}
    tcmalloc = find_tcmalloc()
    if tcmalloc is not None:
        envs["tcmalloc"] = {**base, "LD_PRELOAD": ":".join([str(tcmalloc), *preload])}
    return envs


@click.group(invoke_without_command=True)
@click.option("--layers", default=2, show_default=True, help="decoder layers of the student")
@click.option("--steps", default=5, show_default=True, help="timed steps per process, after one warm-up")
@click.option("--rounds", default=2, show_default=True, help="processes per variant, taken in turns")
@click.option("--tokens", default=512, show_default=True)
@click.option("--rows", default=2, show_default=True)
@click.option("--only", default="", help="comma-separated variants to run (default: all available)")
@click.option("--out", default=str(ROOT / "bench-results" / "allocator.json"), show_default=True)
@click.pass_context
def main(ctx, layers, steps, rounds, tokens, rows, only, out):
    if ctx.invoked_subcommand:
        return
    from bench_distill import build_cache, build_tokenizer
    from cache_schema import tokenizer_fingerprint

    started = time.perf_counter()
    load_before = os.getloadavg()
    envs = variant_envs()
    if only:
        envs = {name: env for name, env in envs.items() if name in only.split(",") or name == "glibc_default"}
    runs = {name: [] for name in envs}
    with tempfile.TemporaryDirectory(prefix="bench-allocator-") as tmp:
        tokenizer = build_tokenizer(Path(tmp) / "tokenizer")
        cache = build_cache(Path(tmp) / "cache", tokenizer_fingerprint(tokenizer), examples=rows, k=20)
        spec = {"cache": str(cache), "vocab": len(tokenizer.get_vocab()), "layers": layers,
                "steps": steps, "tokens": tokens, "rows": rows}
        for round_index in range(rounds):
            for name, env in envs.items():
                done = subprocess.run([sys.executable, __file__, "worker", json.dumps(spec)], env=env,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise click.ClickException(f"{name} worker failed:\n{done.stderr[-2000:]}")
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                click.echo(f"[{time.perf_counter() - started:6.1f} s] round {round_index + 1} {name}: "
                           f"median {runs[name][-1]['median_step_s']:.2f} s/step", err=True)
    variants = {name: {"allocator": results[0]["allocator"],
                       "median_step_s": statistics.median(s for r in results for s in r["step_s"]),
                       "min_step_s": min(s for r in results for s in r["step_s"]),
                       "peak_rss_gib": max(r["peak_rss_gib"] for r in results),
                       "runs": results}
                for name, results in runs.items()}
    default = variants["glibc_default"]["median_step_s"]
    result = {
        "setup": {**{k: v for k, v in spec.items() if k != "cache"}, "rounds": rounds,
                  "cpus": os.cpu_count(), "model": "Qwen2.5-Coder-0.5B shape, random weights, AKD loss"},
        "variants": variants,
        "speedup_over_glibc_default": {name: round(default / v["median_step_s"], 3)
                                       for name, v in variants.items()},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "allocator": describe(), "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    for name, v in variants.items():
        click.echo(f"{name:26} {v['median_step_s']:6.2f} s/step (min {v['min_step_s']:.2f})  {v['allocator']}")
    click.echo(f"load average before {load_before}, after {result['load_average_after']}; wrote {out}")


@main.command(hidden=True)
@click.argument("spec")
def worker(spec):
    """Time the steps in this process, whose allocator was fixed when it started."""
    import torch

    from bench_distill import first_batch, step_times
    from stages.distill.losses import LossConfig

    spec = json.loads(spec)
    allocator = describe()  # before torch's threads and buffers: what this process started with
    batch = first_batch(Path(spec["cache"]), spec["tokens"], spec["rows"])
    times = step_times(spec["layers"], batch, spec["vocab"], spec["steps"], LossConfig().chunk_size,
                       variants=("akd",))["akd"]
    print(json.dumps({"allocator": allocator, "threads": torch.get_num_threads(),
                      "median_step_s": times["wall_s"], "step_s": times["walls"],
                      "cpu_s": times["cpu_s"], "load_average": os.getloadavg(),
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


if __name__ == "__main__":
    main()
