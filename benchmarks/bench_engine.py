"""The inference engines against this CPU's peak: teacher and student tokens/s, the cores they keep
busy, and the engine settings akd chooses.

For each model (the student and the teacher where `make models` built them, a tiny random model
otherwise) and each engine mode (`compiled`: vLLM's default torch.compile; `eager`:
enforce_eager), one fresh engine is built in its own process exactly as akd builds it
(inference.load_engine: the CPU environment defaults, float32 where the CPU emulates bf16,
whole prefills) and timed on HumanEval's instruct prompts, each answer exactly --new-tokens long
(greedy, eos ignored, as `akd speed` does):

- the engine's start (load, compile, warm-up) in seconds;
- decode at each --batches size (the evaluation's path: no log-probs), and the largest batch
  again with the top --k log-probs of every token (stage one's path): generated tokens/s;
- the cores the engine's processes kept busy over each timed call (CPU seconds / wall seconds,
  summed over the process tree; the worker process alone beside it), which answers whether
  vLLM's "Reducing Torch threads from 2 to 1 for serving" costs a core (it concerns the
  scheduler process, not the worker);
- the call's share of this CPU's matmul peak: its analytic FLOPs (2 x the non-embedding linear
  weights per processed token, the LM head per generated token, attention over the context)
  against the best rate of torch's F.linear and of vLLM's own oneDNN matmul at the model's
  shapes in the engine's dtype, measured in the same run before any engine starts. Every call
  starts from an empty prefix cache, so each prompt's FLOPs are really done.

    .venv/bin/python benchmarks/bench_engine.py          # ~10 min for the 0.5B, ~25 with the 1.5B on AVX2
Writes bench-results/engine.json; the CPU class, allocator and vLLM's environment are recorded
beside the figures, which compare only within one run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.machine import cpu_class, machine_facts  # noqa: E402
from inference.allocator import describe as describe_allocator  # noqa: E402

MODELS = {"student": ROOT / "models" / "qwen2.5-coder-0.5b-instruct",
          "teacher": ROOT / "models" / "qwen2.5-coder-1.5b-instruct"}
MODES = ("compiled", "eager")


# ---- the work of a call, and the machine's peak -------------------------------------------------

def shape_of(model: Path) -> dict:
    """The figures the FLOP count needs, from the model's config.json."""
    cfg = json.loads((Path(model) / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    return {"hidden": cfg["hidden_size"], "mlp": cfg["intermediate_size"], "layers": cfg["num_hidden_layers"],
            "heads": heads, "kv_heads": cfg.get("num_key_value_heads", heads), "head_dim": head_dim,
            "vocab": cfg["vocab_size"]}


def engine_dtype(model: Path, requested: str) -> str:
    """The dtype the engine computes in: `auto` (a CPU that computes bf16) is the model's own
    config dtype, which vLLM then takes (float16 runs as bfloat16 on a CPU)."""
    if requested != "auto":
        return requested
    cfg = json.loads((Path(model) / "config.json").read_text())
    dtype = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return "bfloat16" if dtype == "float16" else dtype


def call_flops(shape: dict, prompt_lengths: list[int], new_tokens: int) -> float:
    """FLOPs of generating `new_tokens` after each prompt: every prompt token and every generated
    token but the last passes the layers once; the LM head runs once per generated token (vLLM
    computes logits only where it samples); attention reads the whole context at each position."""
    h, q = shape["hidden"], shape["heads"] * shape["head_dim"]
    kv = shape["kv_heads"] * shape["head_dim"]
    per_token = shape["layers"] * 2 * (h * q + 2 * h * kv + q * h + 3 * h * shape["mlp"])
    total = 0.0
    for length in prompt_lengths:
        positions = length + new_tokens - 1
        total += positions * per_token + new_tokens * 2 * h * shape["vocab"]
        total += shape["layers"] * 4 * q * positions * (positions + 1) / 2  # QK^T and PV
    return total


def matmul_peak(shape: dict, dtype: str, batches: list[int], repeats: int = 5) -> dict:
    """The best GFLOP/s of this CPU at the model's MLP and attention projections, for each decode
    batch and a prefill-sized block, in the engine's dtype, by two kernels: torch's F.linear (what
    training runs) and vLLM's oneDNN matmul with prepacked weights (what the engine runs, where
    vLLM has it). The best of all is the peak a call is measured against."""
    import torch

    torch_dtype = getattr(torch, dtype)
    h, mlp = shape["hidden"], shape["mlp"]
    try:
        from vllm import _custom_ops as ops
        onednn = ops._supports_onednn
    except ImportError:
        onednn = False
    rates: dict[str, dict[str, float]] = {"torch_linear": {}, "vllm_onednn_mm": {}}
    for m in sorted(set(batches) | {512}):
        for name, (k, n) in {"mlp_up": (h, mlp), "mlp_down": (mlp, h), "q_o": (h, h)}.items():
            x, w = torch.randn(m, k, dtype=torch_dtype), torch.randn(n, k, dtype=torch_dtype)
            kernels = {"torch_linear": lambda: torch.nn.functional.linear(x, w)}
            if onednn:
                handle = ops.create_onednn_mm(w.t(), 32)
                kernels["vllm_onednn_mm"] = lambda: ops.onednn_mm(handle, x, None)
            for kernel, run in kernels.items():
                run()
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    run()
                    best = min(best, time.perf_counter() - start)
                rates[kernel][f"{name}@{m}"] = round(2 * m * k * n / best / 1e9, 1)
    return {"dtype": dtype, "threads": torch.get_num_threads(), "gflops_by_shape": rates,
            "peak_gflops": max(v for by_shape in rates.values() for v in by_shape.values())}


# ---- one engine, in its own process -------------------------------------------------------------

def process_tree_cpu() -> tuple[float, dict[str, float]]:
    """CPU seconds of this process and its children (vLLM's engine core and worker), and of each
    child by name."""
    import psutil

    me = psutil.Process()
    total, by_name = 0.0, {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            seconds = times.user + times.system
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        total += seconds
        by_name[name] = by_name.get(name, 0.0) + seconds
    return total, by_name


def timed_call(engine, prompts, spec) -> dict:
    """One generate, timed from an empty prefix cache (the calls share prompts, and a cached prompt
    is not computed again: its FLOPs would count without being done)."""
    engine._llm.reset_prefix_cache()
    cpu0, names0 = process_tree_cpu()
    start = time.perf_counter()
    outputs = engine.generate(prompts, spec)
    wall = time.perf_counter() - start
    cpu1, names1 = process_tree_cpu()
    generated = sum(len(g.token_ids) for samples in outputs for g in samples)
    if generated != len(prompts) * spec.max_new_tokens:
        raise RuntimeError(f"the engine generated {generated} tokens, not {len(prompts)} x {spec.max_new_tokens}")
    worker = max(((n, names1[n] - names0.get(n, 0.0)) for n in names1), key=lambda item: item[1])
    return {"prompts": len(prompts), "prompt_lengths": [len(p) for p in prompts], "generated": generated,
            "seconds": round(wall, 3), "tokens_per_s": round(generated / wall, 2),
            "cores_busy": round((cpu1 - cpu0) / wall, 2),
            "busiest_process": {"name": worker[0], "cores_busy": round(worker[1] / wall, 2)}}


def run_one(model: str, mode: str, batches: list[int], new_tokens: int, k: int) -> dict:
    """Build one engine as akd does and time its calls (runs in a child process)."""
    from inference import SamplingSpec, compute_dtype, load_engine
    from stages.evaluate.datasets import load_tasks
    from stages.evaluate.generate import prompt_ids
    from stages.evaluate.prompts import build_prompt

    start = time.perf_counter()
    context = min(4096, json.loads((Path(model) / "config.json").read_text()).get("max_position_embeddings", 4096))
    engine = load_engine(model, max_model_len=context, max_logprobs=k, enforce_eager=mode == "eager")
    started = time.perf_counter() - start
    try:
        tasks = load_tasks("humaneval", limit=max(batches))
        prompts = [prompt_ids(engine, build_prompt(task, "instruct")) for task in tasks]
        # warm-up of both paths timed (a compiled engine may trace the log-prob path anew)
        engine.generate(prompts[:1], SamplingSpec(max_new_tokens=8, ignore_eos=True))
        engine.generate(prompts[:1], SamplingSpec(max_new_tokens=8, ignore_eos=True, logprobs=k))
        calls = {f"decode@{b}": timed_call(engine, prompts[:b], SamplingSpec(max_new_tokens=new_tokens,
                                                                               ignore_eos=True))
                 for b in batches}
        calls[f"topk{k}@{max(batches)}"] = timed_call(
            engine, prompts[:max(batches)], SamplingSpec(max_new_tokens=new_tokens, ignore_eos=True, logprobs=k))
    finally:
        engine.close()
    return {"model": model, "mode": mode, "dtype": compute_dtype("vllm", "auto"),
            "engine_start_s": round(started, 1), "calls": calls,
            "env": {key: value for key, value in sorted(os.environ.items())
                    if key.startswith("VLLM_CPU_") or key in ("OMP_NUM_THREADS", "LD_PRELOAD")}}


def in_child(model: Path, mode: str, batches: list[int], new_tokens: int, k: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one.json"
        cmd = [sys.executable, __file__, "--one", str(model), "--mode", mode, "--batches",
               ",".join(map(str, batches)), "--new-tokens", str(new_tokens), "--k", str(k), "--out", str(out)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"bench_engine: {model.name} ({mode}) failed:\n" + done.stderr[-3000:])
        return json.loads(out.read_text())


def tiny_model(folder: Path) -> Path:
    """A random 2-layer Qwen2 (tests/tiny_models.py) where no real model is built: the figures
    then say little beyond that the bench runs."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_pair

    return Path(build_tiny_pair(folder)[0])


@click.command()
@click.option("--one", type=click.Path(exists=True), default=None, hidden=True)
@click.option("--mode", type=click.Choice(MODES), default="compiled", hidden=True)
@click.option("--models", "which", default="student,teacher", show_default=True,
              help="Which of the built models to time (comma-separated; `tiny`: a random 2-layer model).")
@click.option("--modes", default=",".join(MODES), show_default=True, help="Engine modes to compare.")
@click.option("--batches", default="16,64", show_default=True, help="Decode batch sizes (prompts per call).")
@click.option("--new-tokens", default=64, show_default=True, help="Tokens generated per prompt, exactly.")
@click.option("--k", default=20, show_default=True, help="Top-k log-probs of the cache path.")
@click.option("--out", default=str(ROOT / "bench-results" / "engine.json"), show_default=True)
def main(one, mode, which, modes, batches, new_tokens, k, out):
    batch_sizes = [int(b) for b in batches.split(",")]
    if one:
        Path(out).write_text(json.dumps(run_one(one, mode, batch_sizes, new_tokens, k)))
        return
    facts = machine_facts()
    names = which.split(",")
    unknown = sorted(set(names) - set(MODELS) - {"tiny"})
    if unknown:
        raise click.BadParameter(f"unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)}, tiny",
                                 param_hint="--models")
    models = {name: MODELS[name] for name in names if name in MODELS and (MODELS[name] / "config.json").exists()}
    if "tiny" in names or not models:
        models = {"tiny": tiny_model(Path(tempfile.mkdtemp()) / "tiny")}
    from inference import compute_dtype

    requested = compute_dtype("vllm", "auto")
    results = {}
    for name, model in models.items():
        shape = shape_of(model)
        dtype = engine_dtype(model, requested)
        peak = matmul_peak(shape, dtype, batch_sizes)
        print(f"{name}: {dtype} matmul GFLOP/s at its shapes: {peak['gflops_by_shape']}", flush=True)
        runs = {}
        for engine_mode in modes.split(","):
            run = in_child(model, engine_mode, batch_sizes, new_tokens, k)
            for call in run["calls"].values():
                flops = call_flops(shape, call["prompt_lengths"], new_tokens)
                call["gflops"] = round(flops / call["seconds"] / 1e9, 1)
                call["share_of_peak"] = round(call["gflops"] / peak["peak_gflops"], 3)
            runs[engine_mode] = run
            print(f"{name} {engine_mode}: start {run['engine_start_s']} s; " + "; ".join(
                f"{label} {c['tokens_per_s']} tok/s, {c['cores_busy']} cores, {c['share_of_peak']:.0%} of peak"
                for label, c in run["calls"].items()), flush=True)
        results[name] = {"model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
                         "shape": shape, "matmul_peak": peak, "modes": runs}
    record = {"machine": facts, "cpu_class": cpu_class(facts), "allocator": describe_allocator(),
              "new_tokens": new_tokens, "batches": batch_sizes, "k": k, "models": results}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
