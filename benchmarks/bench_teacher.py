"""Teacher-stage throughput: vLLM against HF generate, and what the cache adds to vLLM.

Same model, same prompts (CodeAlpaca instructions, greedy), same process:
(a) generated tokens/s of the vLLM and the HF backend (plain generation, no log-probs; HF on
    the first --hf-prompts prompts only, it is slow on a CPU);
(b) the cache's cost on top of plain vLLM generation: logprobs=0 and no writing, against
    logprobs=k + turning them into arrays + encoding and writing Parquet shards.
    Goal: the extra is at most 10% of the cache path's wall time.
(c) score mode: the same engine scoring the answers it just generated (prompt log-probs,
    top-k at every position), tokens/s against generation with logprobs=k. Scoring is prefill,
    so the goal is at least twice the generation rate.

    .venv/bin/python benchmarks/bench_teacher.py [--model models/qwen2.5-coder-1.5b-instruct]
Writes bench-results/teacher.json. The default model is the real teacher when it has been
built (make models), else a tiny random model. The CPU may be shared: the load average is
recorded beside the numbers.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.allocator import describe as describe_allocator  # noqa: E402
DEFAULT_MODEL = ROOT / "models" / "qwen2.5-coder-1.5b-instruct"
DATASET = ROOT / "data" / "code_alpaca_2k.json"


def load_instructions(count: int) -> list[tuple[str, str]]:
    rows = json.loads(DATASET.read_text())
    return [(r["instruction"], r.get("input") or "") for r in rows[:count]]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def tokens_of(results) -> int:
    return sum(len(g.token_ids) for samples in results for g in samples)


def write_cache(results, prompts, k: int, vocab_size: int, out_dir: Path) -> dict:
    """Encode and write the generations as the teacher stage does; returns the manifest totals."""
    from cache_schema import CachedExample, CacheWriter

    writer = CacheWriter.open(out_dir, {"bench": "teacher"}, k=k, vocab_size=vocab_size,
                              overwrite=True, rows_per_shard=64)
    for i, (prompt, samples) in enumerate(zip(prompts, results)):
        gen = samples[0]
        writer.add(CachedExample(f"bench:{i}:0", prompt, gen.token_ids, gen.topk_ids,
                                 gen.topk_logprobs, gen.finish_reason, gen.sampled_logprobs))
    manifest = writer.close()
    return {"bytes": manifest.bytes, "response_tokens": manifest.response_tokens,
            "encoding": manifest.encoding}


def bench(model: str, prompts_n: int, max_new_tokens: int, k: int, hf_batch_size: int,
          repeats: int, hf_prompts: int = 8) -> dict:
    from transformers import AutoConfig

    from inference import SamplingSpec, load_engine
    from inference.templates import get_template

    load_before = os.getloadavg()
    vocab_size = AutoConfig.from_pretrained(model).get_text_config().vocab_size
    engine, start_s = timed(lambda: load_engine(model, backend="vllm", max_model_len=1024,
                                                max_logprobs=k))
    template = get_template("plain")
    prompts = [template.render(engine.tokenizer, i, x) for i, x in load_instructions(prompts_n)]
    plain = SamplingSpec(max_new_tokens=max_new_tokens)
    with_k = SamplingSpec(max_new_tokens=max_new_tokens, logprobs=k)
    plain_s, cache_gen_s, write_s, cache = [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        warm = engine.generate(prompts[:2], SamplingSpec(max_new_tokens=4, logprobs=k))
        write_cache(warm, prompts[:2], k, vocab_size, Path(tmp) / "cache")  # imports, first use
        for _ in range(repeats):  # alternate, so a burst of load from elsewhere hits both
            results, seconds = timed(lambda: engine.generate(prompts, plain))
            plain_s.append(seconds)
            tokens = tokens_of(results)
            results, seconds = timed(lambda: engine.generate(prompts, with_k))
            cache_gen_s.append(seconds)
            assert tokens_of(results) == tokens, "greedy runs generated different lengths"
            cache, seconds = timed(lambda: write_cache(results, prompts, k, vocab_size,
                                                       Path(tmp) / "cache"))
            write_s.append(seconds)
        responses = [samples[0].token_ids for samples in results]
        score_s = [timed(lambda: engine.score(prompts, responses, k))[1] for _ in range(repeats)]
    engine.close()
    best_plain, best_gen, best_write = min(plain_s), min(cache_gen_s), min(write_s)
    cache_path = best_gen + best_write
    result = {
        "model": str(model), "prompts": len(prompts), "max_new_tokens": max_new_tokens, "k": k,
        "greedy": True, "repeats": repeats, "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "vllm": {"engine_start_s": round(start_s, 1), "generated_tokens": tokens,
                 "plain_s": [round(x, 2) for x in plain_s],
                 "tokens_per_s": round(tokens / best_plain, 1)},
        "cache_cost": {
            "logprobs_generate_s": [round(x, 2) for x in cache_gen_s],
            "encode_write_s": [round(x, 3) for x in write_s],
            "plain_generate_s": round(best_plain, 2),
            "cache_path_s": round(cache_path, 2),
            "extra_share_of_cache_path": round((cache_path - best_plain) / cache_path, 3),
            "logprobs_share": round((best_gen - best_plain) / cache_path, 3),
            "write_share": round(best_write / cache_path, 3),
            "goal": "extra_share_of_cache_path <= 0.10",
            "bytes_per_token": round(cache["bytes"] / cache["response_tokens"], 1),
            "encoding": cache["encoding"],
        },
        "scoring": {
            "score_s": [round(x, 2) for x in score_s], "scored_tokens": tokens,
            "tokens_per_s": round(tokens / min(score_s), 1),
            "generation_with_logprobs_tokens_per_s": round(tokens / best_gen, 1),
            "speedup_over_generation": round(best_gen / min(score_s), 2),
            "goal": "speedup_over_generation >= 2",
        },
    }
    if hf_prompts:  # a rate: the first prompts are enough, HF generate is slow on a CPU
        result.update(bench_hf(model, prompts[:hf_prompts], plain, hf_batch_size,
                               tokens / best_plain))
    return result


def bench_hf(model: str, prompts, spec, batch_size: int, vllm_tokens_per_s: float) -> dict:
    from inference import load_engine

    hf, load_s = timed(lambda: load_engine(model, backend="hf", max_model_len=1024,
                                           batch_size=batch_size))
    results, seconds = timed(lambda: hf.generate(prompts, spec))
    hf.close()
    tokens = tokens_of(results)
    return {"hf": {"load_s": round(load_s, 1), "batch_size": batch_size, "generated_tokens": tokens,
                   "generate_s": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)},
            "vllm_over_hf_speedup": round(vllm_tokens_per_s / (tokens / seconds), 2)}


@click.command()
@click.option("--model", default=None, help="teacher folder (default: the real teacher if built, "
              "else a tiny random model)")
@click.option("--prompts", "prompts_n", default=32, show_default=True)
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--k", default=20, show_default=True)
@click.option("--hf-batch-size", default=8, show_default=True)
@click.option("--repeats", default=2, show_default=True,
              help="alternating plain / cache-path vLLM runs; the best of each is kept")
@click.option("--hf-prompts", default=8, show_default=True,
              help="how many of the prompts the HF backend generates for (0: skip HF)")
@click.option("--out", default=str(ROOT / "bench-results" / "teacher.json"), show_default=True)
def main(model, prompts_n, max_new_tokens, k, hf_batch_size, repeats, hf_prompts, out):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if model is None:
        if DEFAULT_MODEL.exists():
            model = str(DEFAULT_MODEL)
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_models import build_tiny_pair

            model = str(build_tiny_pair(Path(tempfile.mkdtemp()))[0])
    result = {"allocator": describe_allocator(),
              **bench(model, prompts_n, max_new_tokens, k, hf_batch_size, repeats, hf_prompts)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
