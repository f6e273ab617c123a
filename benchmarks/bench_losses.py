"""Cost of the distillation losses at Qwen2.5-0.5B's LM head (V 151,936, H 896).

(a) forward+backward time of the chunked AKD loss against the chunked FKL loss
    and plain F.cross_entropy on full logits (goal: AKD / FKL <= 1.10), as wall
    time and as the process's CPU time (steadier when other jobs share the cores);
(b) peak memory of the chunked AKD loss against a naive float32 full-vocabulary
    top-k loss (logits [N, V], log_softmax, gather), goal <= 0.25x.
Each measurement runs in a fresh subprocess; its peak is ru_maxrss minus the
resident size after the inputs are built, so every variant starts equal.
Memory is measured twice: with the LM-head weight frozen (the loss's own
working set, the goal's subject) and trained (adds its [V, H] gradient).

    .venv/bin/python benchmarks/bench_losses.py --repeats 2
Writes bench-results/losses.json and prints a table.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import psutil
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.allocator import describe as describe_allocator  # noqa: E402

from stages.distill.losses import LossConfig, topk_distill_loss  # noqa: E402

VARIANTS = ("akd", "fkl", "cross_entropy", "naive_topk_fkl")


@click.group(invoke_without_command=True)
@click.option("--positions", default=1024, show_default=True)
@click.option("--vocab", default=151_936, show_default=True)
@click.option("--hidden", default=896, show_default=True)
@click.option("--k", default=20, show_default=True)
@click.option("--repeats", default=2, show_default=True, help="timed runs after one warm-up")
@click.option("--dtypes", default="float32,bfloat16", show_default=True)
@click.option("--chunk-size", default=LossConfig().chunk_size, show_default=True)
@click.option("--sweep-chunks", default="128,512,1024", show_default=True,
              help="extra chunk sizes whose AKD peak memory is measured (frozen head, float32)")
@click.option("--out", default=str(ROOT / "bench-results" / "losses.json"), show_default=True)
@click.pass_context
def main(ctx, positions, vocab, hidden, k, repeats, dtypes, chunk_size, sweep_chunks, out):
    if ctx.invoked_subcommand:
        return
    shape = dict(positions=positions, vocab=vocab, hidden=hidden, k=k, chunk_size=chunk_size)
    results = {"shape": shape, "threads": torch.get_num_threads(), "allocator": describe_allocator(), "runs": []}
    for dtype in dtypes.split(","):
        for variant in VARIANTS:
            results["runs"].append(_spawn(shape, variant, dtype, repeats, train_head=True))
        for variant in ("akd", "naive_topk_fkl"):
            results["runs"].append(_spawn(shape, variant, dtype, 0, train_head=False))
    sweep = [int(c) for c in sweep_chunks.split(",") if c]
    results["chunk_sweep"] = [_spawn({**shape, "chunk_size": c}, "akd", "float32", 0, train_head=False) for c in sweep]
    results["summary"] = _summary(results["runs"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    _print_table(results)
    click.echo(f"wrote {out}")


@main.command(hidden=True)
@click.argument("spec")
def worker(spec):
    """One variant in this fresh process; prints its measurements as JSON."""
    spec = json.loads(spec)
    s = spec["shape"]
    dtype = getattr(torch, spec["dtype"])
    torch.manual_seed(0)
    hidden = torch.randn(s["positions"], s["hidden"], dtype=dtype).requires_grad_()
    weight = torch.randn(s["vocab"], s["hidden"], dtype=dtype).mul_(0.02).requires_grad_(spec["train_head"])
    ids, logprobs, mass, targets = _teacher(s)
    run = _VARIANT_FNS[spec["variant"]]
    rss_before = psutil.Process().memory_info().rss
    wall, cpu = [], []
    for _ in range(spec["repeats"] + 1):
        hidden.grad = weight.grad = None
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        run(hidden, weight, ids, logprobs, mass, targets, s)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"wall_s": wall[1:], "cpu_s": cpu[1:], "peak_delta_mb": (peak - rss_before) / 2**20}
    print(json.dumps({**spec, **result}))


def _teacher(s):
    """Distinct ids per row (a strided pattern), peaked log-probs, tail mass kept."""
    n, k, vocab = s["positions"], s["k"], s["vocab"]
    ids = (torch.randint(vocab, (n, 1)) + 5003 * torch.arange(k)) % vocab
    scores = torch.sort(4.0 * torch.randn(n, k + 1), dim=-1, descending=True).values
    logprobs = scores.log_softmax(-1)[:, :k]
    return ids, logprobs, logprobs.exp().sum(-1), ids[:, 0].clone()


def _chunked(kind):
    def run(hidden, weight, ids, logprobs, mass, targets, s):
        config = LossConfig(kind=kind, chunk_size=s["chunk_size"])
        loss, _ = topk_distill_loss(hidden, weight, ids, logprobs, mass, targets, config)
        loss.backward()

    return run


def _cross_entropy(hidden, weight, ids, logprobs, mass, targets, s):
    F.cross_entropy((hidden @ weight.T).float(), targets).backward()


def _naive_topk_fkl(hidden, weight, ids, logprobs, mass, targets, s):
    log_q = (hidden @ weight.T).float().log_softmax(-1)
    log_q_topk = log_q.gather(1, ids)
    log_q_tail = torch.log1p(-log_q_topk.logsumexp(-1).exp().clamp_max(1 - 1e-6))
    log_p_tail = torch.log((1 - mass).clamp_min(1e-8))
    fkl = (logprobs.exp() * (logprobs - log_q_topk)).sum(-1) + log_p_tail.exp() * (log_p_tail - log_q_tail)
    fkl.mean().backward()


_VARIANT_FNS = {
    "akd": _chunked("akd"),
    "fkl": _chunked("fkl"),
    "cross_entropy": _cross_entropy,
    "naive_topk_fkl": _naive_topk_fkl,
}


def _spawn(shape, variant, dtype, repeats, train_head):
    spec = dict(shape=shape, variant=variant, dtype=dtype, repeats=repeats, train_head=train_head)
    click.echo(f"  {variant} {dtype} train_head={train_head} chunk={shape['chunk_size']} ...", err=True)
    done = subprocess.run(
        [sys.executable, __file__, "worker", json.dumps(spec)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs):
    out = {}
    for dtype in sorted({r["dtype"] for r in runs}):
        def pick(variant, train_head):
            return next(r for r in runs if (r["dtype"], r["variant"], r["train_head"]) == (dtype, variant, train_head))

        def med(variant, clock):
            return statistics.median(pick(variant, True)[clock])

        out[dtype] = {
            "akd_over_fkl_cpu_time": med("akd", "cpu_s") / med("fkl", "cpu_s"),
            "akd_over_cross_entropy_cpu_time": med("akd", "cpu_s") / med("cross_entropy", "cpu_s"),
            "akd_over_naive_cpu_time": med("akd", "cpu_s") / med("naive_topk_fkl", "cpu_s"),
            "akd_over_fkl_wall_time": med("akd", "wall_s") / med("fkl", "wall_s"),
            "akd_over_naive_memory_frozen_head": pick("akd", False)["peak_delta_mb"]
            / pick("naive_topk_fkl", False)["peak_delta_mb"],
            "akd_over_naive_memory_trained_head": pick("akd", True)["peak_delta_mb"]
            / pick("naive_topk_fkl", True)["peak_delta_mb"],
        }
    return out


def _print_table(results):
    click.echo(f"shape {results['shape']}, {results['threads']} threads")
    click.echo(f"{'variant':<16}{'dtype':<10}{'head':<9}{'wall s':>8}{'cpu s':>8}{'peak MiB':>10}")
    for r in results["runs"]:
        wall, cpu = (f"{statistics.median(r[c]):.2f}" if r[c] else "-" for c in ("wall_s", "cpu_s"))
        head = "trained" if r["train_head"] else "frozen"
        click.echo(f"{r['variant']:<16}{r['dtype']:<10}{head:<9}{wall:>8}{cpu:>8}{r['peak_delta_mb']:>10.0f}")
    for r in results["chunk_sweep"]:
        click.echo(f"akd float32 frozen head, chunk {r['shape']['chunk_size']}: peak {r['peak_delta_mb']:.0f} MiB")
    for dtype, ratios in results["summary"].items():
        click.echo(f"{dtype}: " + ", ".join(f"{name} {value:.3f}" for name, value in ratios.items()))


if __name__ == "__main__":
    main()
