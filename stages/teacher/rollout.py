"""`akd rollout`: a model (usually the student) answers the stage-one prompts; the answers go
to a responses file (responses_file.py) that score mode has the teacher score.

Rows are read, checked and numbered as stage one does (example "<tag>:<row>:<sample>"),
sample s of row r uses seed + r*n + s, and a rerun skips the examples of complete shards.
The model's engine is closed before this returns: the teacher that scores runs later, in
another process, never beside it.
"""
from __future__ import annotations

import time
from collections import Counter

from cache_schema import tokenizer_fingerprint
from common.files import names_full_disk
from inference.templates import get_template

from .chunks import missing_samples, new_samples, open_engine, run_chunks, sample_chunk
from .identity import engine_identity, sampling_identity
from .prompts import build_prompts
from .responses_file import Response, ResponsesWriter
from .rollout_config import RolloutConfig
from .rows import iter_source_rows, open_dataset, select_indices
from .summary import format_summary

SKIP_EMPTY_ANSWER = "empty_answer"


def rollout_identity(config: RolloutConfig, tokenizer, template, dataset_identity: dict) -> dict:
    return {
        "model": engine_identity(config.model, config.engine),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "template": template.to_dict(),
        "sampling": sampling_identity(config.sampling),
        "dataset": dataset_identity,
    }


def run_rollout(config: RolloutConfig) -> dict:
    """Fill (or resume) the responses file config.out; returns the run summary (also printed)."""
    config.validate()
    with names_full_disk(config.out, "rerun the same command: it resumes after the last complete shard"):
        return _rollout(config)


def _rollout(config: RolloutConfig) -> dict:
    from transformers import AutoTokenizer

    start = time.perf_counter()
    sampling = config.sampling
    template = get_template(config.template, config.templates_file)
    tokenizer = AutoTokenizer.from_pretrained(config.model, revision=config.engine.revision)
    dataset, dataset_identity, bad_rows = open_dataset(config.data)  # rows as stage one reads them
    tag = dataset_identity["tag"]
    indices = select_indices(len(dataset), config.data.offset, config.data.limit, 1, 0,
                             source=config.data.dataset)  # none: refused before anything is written
    writer = ResponsesWriter.open(config.out, rollout_identity(config, tokenizer, template,
                                                               dataset_identity),
                                  overwrite=config.output.overwrite,
                                  rows_per_shard=config.output.rows_per_shard)
    done = set(writer.done_ids)
    skipped: Counter = Counter()
    rows = iter_source_rows(dataset, indices, config.data, skipped, bad_rows)
    pairs = build_prompts(rows, tokenizer, tokenizer, template, template,
                          config.engine.max_model_len - sampling.max_new_tokens, skipped)
    missing = missing_samples(pairs, tag, sampling.n, done)
    pending = [p for p in pairs if missing[p.row_index]]
    writer.record_skipped(skipped)
    finish: Counter = Counter()
    written = {"answers": 0, "tokens": 0}
    generate_s = 0.0
    if pending:
        engine = open_engine(config.model, config.engine, seed=sampling.seed, max_logprobs=1)

        def take(chunk, results):
            for pair, eid, gen in new_samples(chunk, results, tag, done):
                if not gen.token_ids:
                    skipped[SKIP_EMPTY_ANSWER] += 1
                    continue
                writer.add(Response(eid, pair.student_ids, gen.token_ids, gen.finish_reason))
                finish[gen.finish_reason] += 1
                written["tokens"] += len(gen.token_ids)
                written["answers"] += 1
            return sum(len(s) for s in results), written["tokens"]

        generate_s = run_chunks(pending, config.output.chunk_size, engine, writer,
                                lambda chunk: sample_chunk(engine, chunk, sampling), take,
                                total=len(pending) * sampling.n, unit="ans", desc="rollout",
                                progress=config.output.progress)
    writer.record_skipped(skipped)
    header = writer.close()
    tokens = written["tokens"]
    summary = {
        "responses_dir": str(config.out),
        "rows_selected": len(indices),
        "responses_written": written["answers"],
        "responses_already_done": len(pairs) * sampling.n - sum(missing.values()),
        "responses_in_file": sum(s["rows"] for s in header["shards"]),
        "response_tokens_written": tokens,
        "skipped": dict(sorted(skipped.items())),
        "finish_reasons": dict(sorted(finish.items())),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "generate_time_s": round(generate_s, 2),
        "tokens_per_s": tokens / generate_s if generate_s > 0 else None,
    }
    print(format_summary(summary).replace("teacher cache summary", "rollout summary"), flush=True)
    return summary
