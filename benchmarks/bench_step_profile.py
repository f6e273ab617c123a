"""Where one real-shape distillation step spends its time, and its share of this CPU's matmul peak.

One AKD step of a random-weight student of Qwen2.5-Coder-0.5B's shape (all 24 layers by default,
hidden 896, MLP 4,864, vocabulary 151,936; float32 master weights, fused AdamW, matmuls in the
precision `akd distill --precision auto` picks here) on micro-batches of the default's size
(`--tokens`, two rows), one optimizer step per `--grad-accum` micro-batches: the README default's
(1) and grid v3's (2) by default. Three things are measured in the same run:

- the machine's own matmul rate at the model's shapes (q/o, k/v, MLP up and down, the LM head
  over a loss chunk), in the step's matmul dtype: the best of several timed torch.mm calls each,
  and their mix weighted by the step's FLOPs (the peak the step is measured against);
- the step's wall time per micro-batch (median of `--repeats` optimizer steps after a warm-up,
  for each accumulation) and its share of that peak, from the step's analytic FLOPs (6 x tokens
  x non-embedding parameters, the LM head over the response positions, attention); where a step
  has several micro-batches, also with every micro-batch casting the weights anew (what the
  trainer's step_casts saves), timed in turn with it;
- a breakdown of one profiled step (torch.profiler, self CPU time by op) into matmuls,
  attention, the loss's vocabulary work, the optimizer, dtype casts and copies, and the rest.

The result names the CPU class (AMX / AVX-512 BF16 / AVX2) and the allocator; the goals of
issue 20 are ratios of the peak per class, so a figure says nothing about another class.

    .venv/bin/python benchmarks/bench_step_profile.py            # ~3 min on AVX-512, ~6 on AVX2
Writes bench-results/step_profile.json and prints it.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_distill import QWEN_05B, build_cache, build_tokenizer, first_batch  # noqa: E402

from cache_schema import tokenizer_fingerprint  # noqa: E402
from common.machine import cpu_class, machine_facts  # noqa: E402
from inference.allocator import describe as describe_allocator  # noqa: E402
from stages.distill import DistillConfig  # noqa: E402
from stages.distill.losses import LossConfig  # noqa: E402
from stages.distill.student_model import DistillStudent  # noqa: E402
from stages.distill.trainer import matmul_precision, step_casts  # noqa: E402
from study.grid_v3.config import GridV3Config  # noqa: E402

GOALS = {"amx": 0.60, "avx512_bf16": 0.85, "avx2": 0.70}  # issue 20: the step's share of the class's peak
# profiler op names by category (self CPU time); anything else is "other"
CATEGORIES = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_mkldnn",
               "mkldnn", "aten::baddbmm"),
    "attention": ("scaled_dot_product", "_flash_attention", "aten::_efficient_attention"),
    "optimizer": ("_fused_adamw", "adamw", "Optimizer.step"),
    "casts_copies": ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous"),
    "softmax_logsumexp": ("softmax", "logsumexp", "log_softmax"),
}


def matmul_rates(dtype: torch.dtype, tokens: int, chunk: int, repeats: int = 5) -> dict:
    """GFLOP/s of torch.mm at the step's shapes, best of `repeats` each."""
    h, mlp, vocab = QWEN_05B["hidden_size"], QWEN_05B["intermediate_size"], QWEN_05B["vocab_size"]
    kv = h // QWEN_05B["num_attention_heads"] * QWEN_05B["num_key_value_heads"]
    shapes = {"q_o": (tokens, h, h), "k_v": (tokens, h, kv), "mlp_up": (tokens, h, mlp),
              "mlp_down": (tokens, mlp, h), "lm_head_chunk": (chunk, h, vocab)}
    rates = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
        rates[name] = 2 * m * k * n / best / 1e9
    return rates


def matmul_peak(runs: list[dict], flops: dict) -> dict:
    """The best rate of each shape over the runs (a shared VM's speed drifts within minutes, so
    the rates are measured before and after the step's timings). `peak_gflops` is the best
    shape's; `step_mix_gflops` the rate the step's own matmuls would run at (each shape's rate
    weighted by its share of the step's FLOPs), which the step's share is measured against."""
    rates = {name: max(run[name] for run in runs) for name in runs[0]}
    h, mlp = QWEN_05B["hidden_size"], QWEN_05B["intermediate_size"]
    kv = h // QWEN_05B["num_attention_heads"] * QWEN_05B["num_key_value_heads"]
    work = {"q_o": 2 * h * h, "k_v": 2 * h * kv, "mlp_up": 2 * h * mlp, "mlp_down": h * mlp}  # per token, per layer
    body = sum(work.values())
    mix = {name: flops["body"] * w / body for name, w in work.items()} | {"lm_head_chunk": flops["lm_head"]}
    seconds = sum(f / (rates[name] * 1e9) for name, f in mix.items())
    return {"gflops_by_shape": {k: round(v, 1) for k, v in rates.items()},
            "peak_gflops": round(max(rates.values()), 1),
            "step_mix_gflops": round(sum(mix.values()) / seconds / 1e9, 1),
            "step_mix_gflops_by_run": [round(sum(mix.values()) / sum(f / (run[name] * 1e9) for name, f in mix.items())
                                             / 1e9, 1) for run in runs]}


def step_flops(layers: int, tokens: int, response: int) -> dict:
    """Analytic FLOPs of forward + backward (x3 of forward) of one micro-batch."""
    h, mlp, heads = QWEN_05B["hidden_size"], QWEN_05B["intermediate_size"], QWEN_05B["num_attention_heads"]
    kv = h // heads * QWEN_05B["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * mlp  # q, o; k, v; gate, up, down
    body = 6 * tokens * per_layer * layers
    head = 6 * response * h * QWEN_05B["vocab_size"]  # the loss forms logits of response positions only
    attention = 3 * layers * 2 * 2 * tokens * tokens * h  # QK^T and AV, fwd + bwd (upper bound: no mask savings)
    return {"layers": layers, "body": body, "lm_head": head, "attention": attention, "total": body + head + attention}


def categorize(events) -> dict:
    seconds = defaultdict(float)
    for event in events:
        name = event.key
        category = next((c for c, keys in CATEGORIES.items() if any(k in name for k in keys)), "other")
        seconds[category] += event.self_cpu_time_total / 1e6
    total = sum(seconds.values())
    return {c: {"s": round(s, 3), "share": round(s / total, 3)} for c, s in sorted(seconds.items(), key=lambda x: -x[1])}


def top_ops(events, n: int = 15) -> list[dict]:
    """The ops that took most self CPU time: what a category's figure is made of."""
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:n]
    return [{"op": e.key, "s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count} for e in ranked]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@click.command()
@click.option("--layers", default=24, show_default=True, help="decoder layers (24: the real depth)")
@click.option("--tokens", default=512, show_default=True, help="tokens of the micro-batch (two rows)")
@click.option("--repeats", default=3, show_default=True, help="timed steps after one warm-up")
@click.option("--grad-accum", "accumulations", type=int, multiple=True,
              default=(DistillConfig.grad_accum, GridV3Config.grad_accum), show_default=True,
              help="micro-batches per optimizer step (repeat: each is timed; the first is profiled)")
@click.option("--precision", default=DistillConfig.precision, show_default=True,
              help="as akd distill --precision (auto: what this machine computes fast)")
@click.option("--out", default=str(ROOT / "bench-results" / "step_profile.json"), show_default=True)
def main(layers, tokens, repeats, accumulations, precision, out):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    started = time.perf_counter()
    precision = matmul_precision(DistillConfig(caches=("bench",), precision=precision), torch.device("cpu"))
    chunk = LossConfig().chunk_size
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        tokenizer = build_tokenizer(Path(tmp) / "tokenizer")
        cache = build_cache(Path(tmp) / "cache", tokenizer_fingerprint(tokenizer), examples=16, k=20)
        batch = first_batch(cache, tokens, 2)
        vocab = len(tokenizer.get_vocab())
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=layers, **QWEN_05B))
    model.config.use_cache = False
    module = DistillStudent(model, LossConfig(kind="akd", chunk_size=chunk), vocab).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    bf16 = precision == "bf16"

    def step(accumulate: int, reuse_casts: bool = True):
        """One optimizer step as the trainer makes it (reuse_casts=False: every micro-batch casts
        the weights anew, as akd did before step_casts)."""
        with step_casts(module, "cpu") if reuse_casts else nullcontext():
            for _ in range(accumulate):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss, _ = module(**batch)
                loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    mm_dtype = torch.bfloat16 if bf16 else torch.float32
    rates_before = matmul_rates(mm_dtype, int(batch["input_ids"].numel()), chunk)
    variants = [(g, reuse) for g in accumulations for reuse in ((True, False) if g > 1 else (True,))]
    for g, reuse in variants:  # warm-up: optimizer state, allocator pools (the first steps of a
        step(g, reuse)         # process fault in gigabytes of fresh pages: seconds each)
    timed = {variant: [] for variant in variants}
    for _ in range(repeats):  # in turn, so that a drift of the machine hits every variant alike
        for (g, reuse), ts in timed.items():
            ts.append(_timed(lambda: step(g, reuse)) / g)
    per_micro_batch = {g: timed[(g, True)] for g in accumulations}
    casting_each = {g: timed[(g, False)] for g in accumulations if (g, False) in timed}
    times = per_micro_batch[accumulations[0]]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(accumulations[0])
    events = prof.key_averages()
    breakdown = categorize(events)
    seq_tokens = int(batch["attention_mask"].sum())
    flops = step_flops(layers, seq_tokens, int(batch["response_mask"].sum()))
    rates_after = matmul_rates(mm_dtype, int(batch["input_ids"].numel()), chunk)
    peak = {"dtype": str(mm_dtype).removeprefix("torch."), **matmul_peak([rates_before, rates_after], flops)}
    median = statistics.median(times)
    achieved = flops["total"] / median / 1e9
    facts = machine_facts()
    cls = cpu_class(facts)
    result = {
        "machine": facts, "cpu_class": cls, "allocator": describe_allocator(), "threads": torch.get_num_threads(),
        "setup": {"layers": layers, "batch": list(batch["input_ids"].shape), "tokens": seq_tokens,
                  "response_positions": int(batch["response_mask"].sum()), "precision": precision,
                  "loss": "akd", "chunk_size": chunk, "optimizer": "fused AdamW, float32 master weights",
                  "grad_accum": accumulations[0]},
        "step_s": {"median": round(median, 3), "all": [round(t, 3) for t in times]},
        "by_grad_accum": {str(g): {"s_per_micro_batch": round(statistics.median(ts), 3),
                                   "share_of_peak": round(flops["total"] / statistics.median(ts) / 1e9
                                                          / peak["step_mix_gflops"], 3),
                                   **({"s_per_micro_batch_casting_each": round(statistics.median(casting_each[g]), 3)}
                                      if g in casting_each else {})}
                          for g, ts in per_micro_batch.items()},
        "flops": flops, "achieved_gflops": round(achieved, 1), "matmul_peak": peak,
        "share_of_peak": round(achieved / peak["step_mix_gflops"], 3),
        "share_of_best_shape": round(achieved / peak["peak_gflops"], 3),
        "goal_share_of_peak": GOALS.get(cls),
        "profiled_step_breakdown": breakdown,
        "profiled_top_ops": top_ops(events),
        "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
