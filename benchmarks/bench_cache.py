"""Bytes per response token and fidelity of each teacher-cache encoding, on real teacher data.

For k = 20 and 50 and each encoding, the real teacher's top-k answers are written through
CacheWriter into real shards and read back through CacheReader. Reported per row: file bytes
per response token (and which columns they go to), the largest |log-prob error| over entries
with p >= 1e-3, the mean error over all entries, write time, and how many response tokens per
second one core decodes into torch tensors. Ids and the float32 top-k mass must come back
exactly; the run fails if they do not.

    benchmarks/bench_cache.py --out bench-results/cache.json
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's packages
from teacher_topk import TeacherTopK, generate_teacher_topk, tiny_stand_in_model  # noqa: E402

from cache_schema import DEFAULT_ENCODING, PAD_ID, CacheReader, CacheWriter, CachedExample  # noqa: E402
from cache_schema.encoding import get_encoding  # noqa: E402
from inference.allocator import describe as describe_allocator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "data" / "code_alpaca_2k.json"
P_FLOOR = 1e-3  # the fidelity bound holds for entries with p >= P_FLOOR
ENCODINGS = (
    "compact-v1:ids=raw,top1=keep,fine=0.0002,coarse=0.0004,deep=0.01",  # near-exact log-probs: the price of fidelity
    "compact-v1:ids=raw,top1=keep,fine=0.0196,coarse=0.1,deep=0.25",
    "compact-v1:ids=raw,top1=skip,fine=0.0196,coarse=0.1,deep=0.25",
    "compact-v1:ids=freq,top1=skip,fine=0.0196,coarse=0.1,deep=0.25",
    "compact-v1:ids=freq,top1=skip,fine=0.0196,coarse=0.2,deep=0.5",
)
IDENTITY = {"teacher": {"model": "bench"}, "tokenizer_fingerprint": "bench", "templates": {},
            "sampling": {"temperature": 0.0}, "dataset": {"path": "code_alpaca_2k.json"}}


def load_or_generate(data: Path | None, model: Path, examples: int, max_new_tokens: int,
                     stand_in: bool, work_dir: Path) -> tuple[TeacherTopK, Path]:
    """The teacher's top-50 answers: from `data` or the kept .npz, else generated now."""
    if stand_in:
        model = tiny_stand_in_model(work_dir / "tiny")
    name = "tiny-stand-in" if stand_in else model.name
    path = data or REPO / "bench-results" / f"teacher-topk-{name}-n{examples}-t{max_new_tokens}-k50.npz"
    if path.exists():
        return TeacherTopK.load(path), path
    if not stand_in and not (model / "config.json").exists():
        raise click.UsageError(f"{model}: no teacher model (run `make models`), or pass --stand-in "
                               "for a smoke run on the tests' tiny random model")
    click.echo(f"generating top-50 answers of {model} for {examples} instructions (kept in {path})")
    topk = generate_teacher_topk(model, DATASET, examples=examples, max_new_tokens=max_new_tokens,
                                 k=50, stand_in=stand_in)
    path.parent.mkdir(parents=True, exist_ok=True)
    topk.save(path)
    return topk, path


def write_cache(topk: TeacherTopK, cache_dir: Path, encoding: str, zstd_level: int) -> float:
    vocab = int(max(max(a.max() for a in topk.topk_ids), max(r.max() for r in topk.response_ids))) + 1
    start = time.perf_counter()
    writer = CacheWriter.open(cache_dir, IDENTITY, k=topk.source["k"], vocab_size=vocab, overwrite=True,
                              encoding=encoding, zstd_level=zstd_level, rows_per_shard=256)
    for i, response in enumerate(topk.response_ids):
        writer.add(CachedExample(example_id=f"ca:{i}:0", prompt_ids=topk.prompt_ids[i], response_ids=response,
                                 topk_ids=topk.topk_ids[i], topk_logprobs=topk.topk_logprobs[i],
                                 finish_reason=topk.finish_reasons[i], sampled_logprobs=topk.topk_logprobs[i][:, 0]))
    writer.close()
    return time.perf_counter() - start


def fidelity(topk: TeacherTopK, cache_dir: Path) -> dict:
    """Errors of the decoded log-probs; raises if an id or a float32 mass is not exact."""
    records = {r.example_id: r for r in CacheReader(cache_dir)}
    high, every = [], []
    for i, logprobs in enumerate(topk.topk_logprobs):
        rec = records[f"ca:{i}:0"]
        if not np.array_equal(rec.topk_ids, topk.topk_ids[i]):
            raise AssertionError(f"example {i}: ids differ after decoding")
        mass = np.minimum(np.exp(logprobs.astype(np.float64)).sum(1), 1.0).astype(np.float32)
        if not np.array_equal(rec.topk_mass, mass):
            raise AssertionError(f"example {i}: float32 top-k mass differs after decoding")
        error = np.abs(rec.topk_logprobs.astype(np.float64) - logprobs)
        high.append(error[logprobs >= np.log(P_FLOOR)])
        every.append(error[topk.topk_ids[i] != PAD_ID])
    high, every = np.concatenate(high), np.concatenate(every)
    return {"max_error_p_ge_1e-3": float(high.max()), "mean_error": float(every.mean()),
            "max_error_all": float(every.max())}


def read_throughput(cache_dir: Path, tokens: int, repeats: int = 3) -> float:
    """Response tokens/s decoded into torch tensors on one thread (best of `repeats`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best = float("inf")
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for record in CacheReader(cache_dir):
                record.to_torch()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return tokens / best


def column_bytes(cache_dir: Path, tokens: int) -> dict:
    """Compressed bytes per response token of each column, and of the footer's id table."""
    sizes: dict[str, float] = {}
    footer = 0
    for path in sorted((cache_dir / "shards").glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                name = column.path_in_schema.split(".")[0]
                sizes[name] = sizes.get(name, 0) + column.total_compressed_size
        footer += sum(len(v) for key, v in (meta.metadata or {}).items() if key.startswith(b"akd."))
    result = {name: round(size / tokens, 2) for name, size in sorted(sizes.items(), key=lambda x: -x[1])}
    result["footer_id_table"] = round(footer / tokens, 2)
    return result


def measure(topk: TeacherTopK, encoding: str, zstd_level: int, work_dir: Path) -> dict:
    cache_dir = work_dir / "cache"
    write_seconds = write_cache(topk, cache_dir, encoding, zstd_level)
    files = sorted((cache_dir / "shards").glob("*.parquet"))
    file_bytes = sum(p.stat().st_size for p in files)
    row = {"k": topk.source["k"], "encoding": get_encoding(encoding).spec, "zstd_level": zstd_level,
           "shards": len(files), "bytes": file_bytes, "bytes_per_token": round(file_bytes / topk.tokens, 2),
           **fidelity(topk, cache_dir), "write_seconds": round(write_seconds, 3),
           "read_tokens_per_s": round(read_throughput(cache_dir, topk.tokens)),
           "column_bytes_per_token": column_bytes(cache_dir, topk.tokens)}
    shutil.rmtree(cache_dir)
    return row


def print_table(rows: list[dict]) -> None:
    click.echo(f"{'k':>3} {'zstd':>4} {'B/token':>8} {'max err':>8} {'mean err':>8} {'write s':>7} "
               f"{'read tok/s':>10}  encoding")
    for r in rows:
        click.echo(f"{r['k']:>3} {r['zstd_level']:>4} {r['bytes_per_token']:>8.2f} "
                   f"{r['max_error_p_ge_1e-3']:>8.4f} {r['mean_error']:>8.4f} {r['write_seconds']:>7.2f} "
                   f"{r['read_tokens_per_s']:>10}  {r['encoding']}")


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=REPO / "bench-results" / "cache.json",
              show_default=True)
@click.option("--model", type=click.Path(path_type=Path), show_default=True,
              default=REPO / "models" / "qwen2.5-coder-1.5b-instruct", help="the real teacher (an HF folder)")
@click.option("--examples", default=24, show_default=True, help="CodeAlpaca instructions the teacher answers")
@click.option("--max-new-tokens", default=160, show_default=True)
@click.option("--data", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="an .npz of top-50 answers to use instead of generating them")
@click.option("--stand-in", is_flag=True, help="use the tests' tiny random model (results labelled as such)")
@click.option("--ks", default="20,50", show_default=True, help="k values to measure (each <= 50)")
@click.option("--encoding", "encodings", multiple=True, help="encoding specs to measure (default: the sweep)")
@click.option("--zstd-levels", default="9,19,22", show_default=True,
              help="zstd levels tried on the default encoding (the others use 9)")
def main(out: Path, model: Path, examples: int, max_new_tokens: int, data: Path | None, stand_in: bool,
         ks: str, encodings: tuple[str, ...], zstd_levels: str) -> None:
    with tempfile.TemporaryDirectory(prefix="akd-bench-cache-") as tmp:
        work_dir = Path(tmp)
        topk, data_path = load_or_generate(data, model, examples, max_new_tokens, stand_in, work_dir)
        click.echo(f"{topk.tokens} response tokens of {len(topk.response_ids)} answers from {data_path.name}"
                   f"{' (TINY RANDOM STAND-IN MODEL, not a real teacher)' if topk.source['stand_in'] else ''}")
        default = get_encoding(DEFAULT_ENCODING).spec
        specs = list(dict.fromkeys(get_encoding(e).spec for e in (encodings or (*ENCODINGS, default))))
        rows = []
        for k in (int(x) for x in ks.split(",")):
            sample = topk.truncated(k)
            for encoding in specs:
                levels = [int(x) for x in zstd_levels.split(",")] if encoding == default else [9]
                for level in levels:
                    rows.append(measure(sample, encoding, level, work_dir))
                    print_table(rows[-1:])
    result = {"benchmark": "cache", "data": {**topk.source, "path": str(data_path), "response_tokens": topk.tokens,
                                             "mean_top1_p": float(np.mean(np.exp(np.concatenate(
                                                 [a[:, 0] for a in topk.topk_logprobs]))))},
              "default_encoding": get_encoding(DEFAULT_ENCODING).spec, "fidelity_bound": {"p_floor": P_FLOOR, "max_error_nats": 0.01},
              "allocator": describe_allocator(),
              "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                          "python": platform.python_version()}, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"\nwrote {out}")
    print_table(rows)


if __name__ == "__main__":
    main()
