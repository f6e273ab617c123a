"""Stage one: run the teacher over the dataset and write its top-k log-probs to the cache."""
from __future__ import annotations

import logging
import time
from collections import Counter

from cache_schema import CachedExample, CacheWriter
from common.files import names_full_disk
from common.settings import option_values
from inference.templates import get_template

from .chunks import example_id, missing_samples, new_samples, open_engine, run_chunks, sample_chunk
from .config import TeacherCacheConfig, TeacherConfigError
from .identity import cache_identity, load_student_tokenizer
from .prompts import PromptPair, build_prompts
from .rows import iter_source_rows, open_dataset, select_indices
from .score import ResponseSource, score_into
from .summary import RunStats, format_summary, make_summary

__all__ = ["build_teacher_cache", "example_id"]
log = logging.getLogger(__name__)
RESUME_HINT = "rerun the same command: it resumes after the last complete shard"


def build_teacher_cache(config: TeacherCacheConfig) -> dict:
    """Fill (or resume) the cache in config.out_dir; returns the run summary (also printed)."""
    config.validate()
    with names_full_disk(config.out_dir, RESUME_HINT):
        return _build(config)


def _build(config: TeacherCacheConfig) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    start = time.perf_counter()
    # bad data fails before any work
    dataset, dataset_identity, bad_rows = open_dataset(config.data, config.output_field,
                                                       config.skip_bad_lines)
    tag = dataset_identity["tag"]
    teacher_template = get_template(config.teacher_template, config.templates_file)
    student_template = get_template(config.student_template, config.templates_file)
    tokenizer = AutoTokenizer.from_pretrained(config.model, revision=config.engine.revision)
    student_tokenizer = load_student_tokenizer(config.student_tokenizer, tokenizer)
    vocab_size = AutoConfig.from_pretrained(
        config.model, revision=config.engine.revision).get_text_config().vocab_size
    source = ResponseSource(config, dataset, tag, tokenizer) if config.responses_from else None
    skipped: Counter = Counter()
    indices = select_indices(len(dataset), config.data.offset, config.data.limit,
                             config.num_workers, config.worker_index, source=config.data.dataset)
    # Score mode needs room for one response token; generation for max_new_tokens.
    room = 2 if source else config.sampling.max_new_tokens
    pairs = build_prompts(iter_source_rows(dataset, indices, config.data, skipped, bad_rows), tokenizer,
                          student_tokenizer, teacher_template, student_template,
                          config.engine.max_model_len - room, skipped)
    if indices and not pairs:  # refused before anything is written
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        raise TeacherConfigError(f"--dataset {config.data.dataset}: none of the {len(indices)} selected rows "
                                 f"is usable ({reasons})")

    writer = CacheWriter.open(
        config.out_dir, cache_identity(config, tokenizer, teacher_template, student_template,
                                       dataset_identity, source.identity if source else None),
        k=config.k, vocab_size=vocab_size, worker_index=config.worker_index,
        num_workers=config.num_workers, overwrite=config.output.overwrite,
        rows_per_shard=config.output.rows_per_shard,
        **({"encoding": config.encoding} if config.encoding else {}))
    done = set(writer.done_ids)
    if source:
        items = source.items(pairs, indices, len(dataset), config.engine.max_model_len, skipped)
        pending = [i for i in items if i.example_id not in done]
        already = len(items) - len(pending)
    else:
        missing = missing_samples(pairs, tag, config.sampling.n, done)
        pending = [p for p in pairs if missing[p.row_index]]
        already = len(pairs) * config.sampling.n - sum(missing.values())
    for reason, count in skipped.items():
        writer.record_skipped(reason, count)

    stats, generate_s = RunStats(), 0.0
    if pending and source:
        generate_s = score_into(writer, pending, config, stats, tokenizer)
    elif pending:
        generate_s = _generate_into(writer, pending, done, tag, config, stats)
    writer.record_stats({**stats.for_manifest(), "teacher_stage": _run_settings(config)})
    manifest = writer.close()
    summary = make_summary(stats, manifest, already_cached=already, rows_selected=len(indices),
                           skipped=skipped, wall_s=time.perf_counter() - start,
                           generate_s=generate_s, cache_dir=str(config.out_dir))
    summary["mode"] = "score" if source else "generate"
    print(format_summary(summary), flush=True)
    return summary


def _generate_into(writer: CacheWriter, pending: list[PromptPair], done: set[str], tag: str,
                   config: TeacherCacheConfig, stats: RunStats) -> float:
    """Generate chunk by chunk (chunks.run_chunks). Returns the seconds spent generating."""
    engine = open_engine(config.model, config.engine, seed=config.sampling.seed,
                         max_logprobs=config.k)

    def take(chunk, results):
        for pair, eid, gen in new_samples(chunk, results, tag, done):
            writer.add(CachedExample(
                example_id=eid, prompt_ids=pair.student_ids, response_ids=gen.token_ids,
                topk_ids=gen.topk_ids, topk_logprobs=gen.topk_logprobs,
                sampled_logprobs=gen.sampled_logprobs, finish_reason=gen.finish_reason))
            stats.add(gen.text, gen.topk_logprobs, gen.finish_reason)
        return sum(len(s) for s in results), stats.tokens

    return run_chunks(pending, config.output.chunk_size, engine, writer,
                      lambda chunk: sample_chunk(engine, chunk, config.sampling, logprobs=config.k),
                      take, total=len(pending) * config.sampling.n, unit="ex", desc="teacher cache",
                      progress=config.output.progress)


def _run_settings(config: TeacherCacheConfig) -> dict:
    """Options that shape the run but not the cache's content (not part of its identity)."""
    keep = ("offset", "limit", "num_workers", "max_model_len", "tensor_parallel_size",
            "chunk_size", "rows_per_shard", "hf_batch_size", "skip_bad_lines")
    values = option_values(config)
    return {key: values[key] for key in keep}
