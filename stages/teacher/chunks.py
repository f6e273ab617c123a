"""The engine loop stage one and `akd rollout` share: chunk by chunk, each chunk's results
reach the writer (and, once a shard fills, the disk) before the next starts, so a stopped
run keeps every finished example and its rerun resumes after them.

Example ids: sample s of dataset row r is "<tag>:<r>:<s>" and is sampled with seed
seed + r*n + s, stable across resumes and workers.
"""
from __future__ import annotations

import time
from typing import Callable

from inference import SamplingSpec, load_engine

from .prompts import PromptPair
from .settings import EngineSettings, SamplingSettings


def example_id(tag: str, row_index: int, sample_index: int) -> str:
    return f"{tag}:{row_index}:{sample_index}"


def missing_samples(pairs: list[PromptPair], tag: str, n: int, done: set[str]) -> dict[int, int]:
    """{row index: how many of its n samples are not yet written}."""
    return {p.row_index: sum(example_id(tag, p.row_index, s) not in done for s in range(n))
            for p in pairs}


def open_engine(model: str, engine: EngineSettings, *, seed: int, max_logprobs: int):
    return load_engine(model, backend=engine.backend, max_model_len=engine.max_model_len,
                       tensor_parallel_size=engine.tensor_parallel_size, dtype=engine.dtype,
                       max_logprobs=max_logprobs, seed=seed, batch_size=engine.hf_batch_size,
                       revision=engine.revision)


def sample_chunk(engine, chunk: list[PromptPair], sampling: SamplingSettings,
                 logprobs: int | None = None):
    """The engine's samples of each prompt of `chunk` (n each, row-seeded)."""
    spec = SamplingSpec(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                        top_p=sampling.top_p, seed=sampling.seed, n=sampling.n,
                        **({} if logprobs is None else {"logprobs": logprobs}))
    return engine.generate([p.teacher_ids for p in chunk], spec,
                           seeds=[sampling.seed + p.row_index * sampling.n for p in chunk])


def new_samples(chunk: list[PromptPair], results, tag: str, done: set[str]):
    """(pair, example id, sample) of each sample not written by an earlier run."""
    for pair, samples in zip(chunk, results):
        for sample_index, gen in enumerate(samples):
            eid = example_id(tag, pair.row_index, sample_index)
            if eid not in done:
                yield pair, eid, gen


def run_chunks(items: list, chunk_size: int, engine, writer, call: Callable, take: Callable, *,
               total: int, unit: str, desc: str, progress: bool) -> float:
    """`call(chunk)` on the engine for each chunk (timed), then `take(chunk, results)`, which
    writes them and returns (answers the bar advances by, tokens written so far). The writer
    is flushed if anything stops the run; the engine is closed either way. Returns the
    seconds spent in `call`."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, disable=not progress, desc=desc)
    spent = 0.0
    try:
        for at in range(0, len(items), chunk_size):
            chunk = items[at:at + chunk_size]
            began = time.perf_counter()
            results = call(chunk)
            spent += time.perf_counter() - began
            answers, tokens = take(chunk, results)
            bar.update(answers)
            bar.set_postfix(tok_s=f"{tokens / spent:.1f}" if spent else "-")
    except BaseException:
        writer.flush()  # keep every finished example; the next run resumes after them
        raise
    finally:
        bar.close()
        engine.close()
    return spent
