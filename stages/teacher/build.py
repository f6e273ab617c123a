"""Stage one: run the teacher over the dataset and write its top-k log-probs to the cache."""
from __future__ import annotations

import logging
import time
from collections import Counter

from cache_schema import FORMAT_VERSION, CachedExample, CacheWriter
from inference import SamplingSpec, load_engine
from inference.templates import get_template

from .config import TeacherCacheConfig
from .identity import cache_identity, load_student_tokenizer
from .prompts import PromptPair, build_prompts
from .rows import iter_source_rows, open_dataset, select_indices
from .score import ResponseSource, score_into
from .summary import RunStats, format_summary, make_summary

log = logging.getLogger(__name__)


def example_id(tag: str, row_index: int, sample_index: int) -> str:
    return f"{tag}:{row_index}:{sample_index}"


def build_teacher_cache(config: TeacherCacheConfig) -> dict:
    """Fill (or resume) the cache in config.out_dir; returns the run summary (also printed)."""
    from transformers import AutoConfig, AutoTokenizer

    start = time.perf_counter()
    config.validate()
    dataset, dataset_identity, bad_rows = open_dataset(config)  # bad data fails before any work
    tag = dataset_identity["tag"]
    teacher_template = get_template(config.teacher_template, config.templates_file)
    student_template = get_template(config.student_template, config.templates_file)
    tokenizer = AutoTokenizer.from_pretrained(config.model, revision=config.revision)
    student_tokenizer = load_student_tokenizer(config.student_tokenizer, tokenizer)
    vocab_size = AutoConfig.from_pretrained(
        config.model, revision=config.revision).get_text_config().vocab_size
    source = ResponseSource(config, dataset, tag, tokenizer) if config.responses_from else None

    writer = CacheWriter.open(
        config.out_dir, cache_identity(config, tokenizer, teacher_template, student_template,
                                       dataset_identity, source.identity if source else None),
        k=config.k, vocab_size=vocab_size, worker_index=config.worker_index,
        num_workers=config.num_workers, overwrite=config.overwrite,
        rows_per_shard=config.rows_per_shard,
        **({"encoding": config.encoding} if config.encoding else {}))
    if writer.manifest.format_version < FORMAT_VERSION:
        log.warning("%s is a format v%d cache (its tail mass is 1 - float32 top-k mass); resuming it as "
                    "v%d, --overwrite rewrites it as v%d", config.out_dir, writer.manifest.format_version,
                    writer.manifest.format_version, FORMAT_VERSION)
    done = set(writer.done_ids)
    skipped: Counter = Counter()
    indices = select_indices(len(dataset), config.offset, config.limit, config.num_workers,
                             config.worker_index)
    # Score mode needs room for one response token; generation for max_new_tokens.
    room = 2 if source else config.max_new_tokens
    pairs = build_prompts(iter_source_rows(dataset, indices, config, skipped, bad_rows), tokenizer,
                          student_tokenizer, teacher_template, student_template,
                          config.max_model_len - room, skipped)
    if source:
        items = source.items(pairs, indices, len(dataset), config.max_model_len, skipped)
        pending = [i for i in items if i.example_id not in done]
        already = len(items) - len(pending)
    else:
        missing = {p.row_index: sum(example_id(tag, p.row_index, s) not in done
                                    for s in range(config.n)) for p in pairs}
        pending = [p for p in pairs if missing[p.row_index]]
        already = len(pairs) * config.n - sum(missing.values())
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
    """Generate chunk by chunk so each chunk's examples reach the writer (and, once a shard
    fills, the disk) before the next starts. Returns the seconds spent generating."""
    from tqdm import tqdm

    engine = load_engine(config.model, backend=config.backend, max_model_len=config.max_model_len,
                         tensor_parallel_size=config.tensor_parallel_size, dtype=config.dtype,
                         max_logprobs=config.k, seed=config.seed, batch_size=config.hf_batch_size,
                         revision=config.revision)
    spec = SamplingSpec(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                        top_p=config.top_p, seed=config.seed, n=config.n, logprobs=config.k)
    bar = tqdm(total=len(pending) * config.n, unit="ex", disable=not config.progress,
               desc="teacher cache")
    spent = 0.0
    try:
        for at in range(0, len(pending), config.chunk_size):
            chunk = pending[at:at + config.chunk_size]
            began = time.perf_counter()
            # Sample s of row r always uses seed + r*n + s: stable across resumes and workers.
            results = engine.generate([p.teacher_ids for p in chunk], spec,
                                      seeds=[config.seed + p.row_index * config.n for p in chunk])
            spent += time.perf_counter() - began
            for pair, samples in zip(chunk, results):
                for sample_index, gen in enumerate(samples):
                    eid = example_id(tag, pair.row_index, sample_index)
                    if eid in done:
                        continue
                    writer.add(CachedExample(
                        example_id=eid, prompt_ids=pair.student_ids, response_ids=gen.token_ids,
                        topk_ids=gen.topk_ids, topk_logprobs=gen.topk_logprobs,
                        sampled_logprobs=gen.sampled_logprobs, finish_reason=gen.finish_reason))
                    stats.add(gen.text, gen.topk_logprobs, gen.finish_reason)
            bar.update(sum(len(s) for s in results))
            bar.set_postfix(tok_s=f"{stats.tokens / spent:.1f}" if spent else "-")
    except BaseException:
        writer.flush()  # keep every finished example; the next run resumes after them
        raise
    finally:
        bar.close()
        engine.close()
    return spent


def _run_settings(config: TeacherCacheConfig) -> dict:
    """Options that shape the run but not the cache's content (not part of its identity)."""
    keep = ("offset", "limit", "num_workers", "max_model_len", "tensor_parallel_size",
            "chunk_size", "rows_per_shard", "hf_batch_size", "skip_bad_lines")
    return {key: config.to_dict()[key] for key in keep}
