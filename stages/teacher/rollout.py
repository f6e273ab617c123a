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
from inference import SamplingSpec, load_engine
from inference.templates import get_template

from .build import example_id
from .identity import model_revision
from .prompts import build_prompts
from .responses_file import Response, ResponsesWriter
from .rollout_config import RolloutConfig
from .rows import iter_source_rows, open_dataset, select_indices
from .summary import format_summary

SKIP_EMPTY_ANSWER = "empty_answer"


def rollout_identity(config: RolloutConfig, tokenizer, template, dataset_identity: dict) -> dict:
    return {
        "model": {"model": config.model, "revision": model_revision(config.model, config.revision),
                  "backend": config.backend, "dtype": config.dtype},
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "template": template.to_dict(),
        "sampling": {"temperature": config.temperature, "top_p": config.top_p, "seed": config.seed,
                     "n": config.n, "max_new_tokens": config.max_new_tokens},
        "dataset": dataset_identity,
    }


def run_rollout(config: RolloutConfig) -> dict:
    """Fill (or resume) the responses file config.out; returns the run summary (also printed)."""
    from transformers import AutoTokenizer

    start = time.perf_counter()
    config.validate()
    rows_config = config.rows_config()
    template = get_template(config.template, config.templates_file)
    tokenizer = AutoTokenizer.from_pretrained(config.model, revision=config.revision)
    dataset, dataset_identity, bad_rows = open_dataset(rows_config)
    tag = dataset_identity["tag"]
    writer = ResponsesWriter.open(config.out, rollout_identity(config, tokenizer, template,
                                                               dataset_identity),
                                  overwrite=config.overwrite, rows_per_shard=config.rows_per_shard)
    done = set(writer.done_ids)
    skipped: Counter = Counter()
    indices = select_indices(len(dataset), config.offset, config.limit, 1, 0)
    rows = iter_source_rows(dataset, indices, rows_config, skipped, bad_rows)
    pairs = build_prompts(rows, tokenizer, tokenizer, template, template,
                          config.max_model_len - config.max_new_tokens, skipped)
    pending = [p for p in pairs
               if any(example_id(tag, p.row_index, s) not in done for s in range(config.n))]
    writer.record_skipped(skipped)
    finish: Counter = Counter()
    tokens, generate_s, written = 0, 0.0, 0
    if pending:
        from tqdm import tqdm

        engine = load_engine(config.model, backend=config.backend,
                             max_model_len=config.max_model_len,
                             tensor_parallel_size=config.tensor_parallel_size, dtype=config.dtype,
                             max_logprobs=1, seed=config.seed, batch_size=config.hf_batch_size,
                             revision=config.revision)
        spec = SamplingSpec(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                            top_p=config.top_p, seed=config.seed, n=config.n)
        bar = tqdm(total=len(pending) * config.n, unit="ans", disable=not config.progress,
                   desc="rollout")
        try:
            for at in range(0, len(pending), config.chunk_size):
                chunk = pending[at:at + config.chunk_size]
                began = time.perf_counter()
                results = engine.generate([p.teacher_ids for p in chunk], spec,
                                          seeds=[config.seed + p.row_index * config.n for p in chunk])
                generate_s += time.perf_counter() - began
                for pair, samples in zip(chunk, results):
                    for sample_index, gen in enumerate(samples):
                        eid = example_id(tag, pair.row_index, sample_index)
                        if eid in done:
                            continue
                        if not gen.token_ids:
                            skipped[SKIP_EMPTY_ANSWER] += 1
                            continue
                        writer.add(Response(eid, pair.student_ids, gen.token_ids, gen.finish_reason))
                        finish[gen.finish_reason] += 1
                        tokens += len(gen.token_ids)
                        written += 1
                bar.update(sum(len(s) for s in results))
                bar.set_postfix(tok_s=f"{tokens / generate_s:.1f}" if generate_s else "-")
        except BaseException:
            writer.flush()  # keep every finished answer; the next run resumes after them
            raise
        finally:
            bar.close()
            engine.close()
    writer.record_skipped(skipped)
    header = writer.close()
    summary = {
        "responses_dir": str(config.out),
        "rows_selected": len(indices),
        "responses_written": written,
        "responses_already_done": len(pairs) * config.n - sum(
            example_id(tag, p.row_index, s) not in done for p in pairs for s in range(config.n)),
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
