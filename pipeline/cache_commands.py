"""`akd cache ...`: look into a teacher cache without the stages."""
from __future__ import annotations

import json

import click
import numpy as np
from tqdm import tqdm

from cache_schema import CacheReader, finalize_cache, verify_cache
from cache_schema.export import ExportConfig, export_cache
from cache_schema.progress import describe as describe_progress
from cache_schema.progress import unfinished_parts
from common.settings import build_config
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_group


@akd_group("cache")
def cache_group():
    """Inspect, verify, finalize and export teacher caches."""


@cache_group.command("verify")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--no-checksums", is_flag=True, help="Skip the sha256 of every shard (faster).")
def verify_command(cache_dir, no_checksums):
    """Check every shard's checksum, schema and counts against the manifest."""
    report = verify_cache(cache_dir, check_checksums=not no_checksums)
    per_token = report.bytes / max(report.response_tokens, 1)
    click.echo(f"{cache_dir}: OK, {report.shards} shards, {report.rows} examples, "
               f"{report.response_tokens} response tokens, {report.bytes} bytes ({per_token:.1f} B/token)")


@cache_group.command("finalize")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False))
def finalize_command(cache_dir):
    """Merge the workers' part manifests into manifest.json once every worker is done."""
    manifest = finalize_cache(cache_dir)
    click.echo(f"{cache_dir}: finalized {len(manifest.shards)} shards, {manifest.rows} examples")


@cache_group.command("inspect")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--examples", default=0, show_default=True, help="Also show the first N examples' token counts.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def inspect_command(cache_dir, examples, as_json):
    """Summarise a cache: who made it, how, how big, what was skipped."""
    _inspect(cache_dir, examples, as_json)


def _inspect(cache_dir, examples: int, as_json: bool) -> None:
    reader = CacheReader(cache_dir, in_progress_ok=True)  # a look is fine; the line below says what it is
    manifest = reader.manifest
    running = unfinished_parts(reader.cache_dir, manifest)
    if running:
        click.echo(f"note: {describe_progress(reader.cache_dir, running, manifest)}; what follows is the sealed "
                   "part only", err=True)
    if as_json:
        click.echo(json.dumps(manifest.to_dict(), indent=2))
        return
    identity = manifest.identity
    teacher = identity.get("teacher", {})
    templates = identity.get("templates", {})
    lines = [
        f"cache        {cache_dir} (format v{manifest.format_version}, encoding {manifest.encoding})",
        f"teacher      {teacher.get('model')} @ {teacher.get('revision')}",
        f"tokenizer    {identity.get('tokenizer_fingerprint')} ({manifest.vocab_size} ids)",
        f"templates    teacher={_template_name(templates.get('teacher'))} "
        f"student={_template_name(templates.get('student'))}",
        f"sampling     {json.dumps(identity.get('sampling', {}), sort_keys=True)}",
        f"responses    {_responses_line(identity.get('responses'))}",
        f"dataset      {json.dumps(identity.get('dataset', {}), sort_keys=True)}",
        f"k            {manifest.k}",
        f"shards       {len(manifest.shards)} from {manifest.num_workers} worker(s)",
        f"examples     {manifest.rows}",
        f"tokens       {manifest.response_tokens} response tokens, "
        f"{manifest.bytes / max(manifest.response_tokens, 1):.1f} B/token on disk",
        f"skipped      {json.dumps(manifest.skipped, sort_keys=True)}",
    ]
    for key, value in manifest.stats.items():
        lines.append(f"{key:<12} {value}")
    click.echo("\n".join(lines))
    for i, record in enumerate(reader):
        if i >= examples:
            break
        mass = float(np.mean(record.topk_mass))
        click.echo(f"  {record.example_id}: prompt {record.prompt_ids.size} tokens, response "
                   f"{record.num_tokens} tokens ({record.finish_reason}), mean top-k mass {mass:.4f}")


@cache_group.command("export")
@click.argument("cache_dir", metavar="CACHE", type=click.Path())
@click.argument("out_dir", metavar="OUT", type=click.Path())
@dataclass_options(ExportConfig)
def export_command(cache_dir, out_dir, **options):
    """Write CACHE as plain Parquet columns in OUT, readable without akd (pandas, duckdb, Axolotl).

    One zstd Parquet shard per cache shard (same relative name), written under a temporary name
    and renamed, plus OUT/akd-export.json with the cache's identity (teacher, tokenizer
    fingerprint, k, templates), the layout and its alignment. Rerun the same command to resume:
    finished shards are kept, missing ones written.

    \b
    --layout akd (default), one row per example:
      example_id, prompt_ids, response_ids, finish_reason,
      topk_ids list<list<int32>>, topk_logprobs list<list<float32>> (raw log-softmax, T=1),
      topk_mass list<float32>, tail_logprob list<float32> (log of the mass outside the top-k).
      Position j is the distribution response token j was drawn from: in the student input
      prompt_ids + response_ids the logits at index len(prompt_ids) + j - 1 predict it.
    --layout axolotl, Axolotl's KD plugin columns over the full sequence:
      input_ids (prompt + response), attention_mask, labels (-100 over the prompt),
      target_token_ids, target_logprobs (renormalised over the top-k), target_mask.
      Row t is the distribution over input_ids[t + 1]: response token j sits at row
      len(prompt_ids) + j - 1; prompt rows and the last row have target_mask 0.
    """
    config = build_config(ExportConfig, options)
    bar = None

    def tick(name, written, total):  # the bar starts with the first shard: errors print alone
        nonlocal bar
        bar = bar or tqdm(total=total, desc="export", unit="shard", leave=False, disable=None)
        bar.update()

    report = export_cache(cache_dir, out_dir, config, on_shard=tick)
    if bar is not None:
        bar.close()
    tokens = max(report.response_tokens, 1)
    click.echo(f"{out_dir}: {config.layout} layout, {len(report.written)} shards written, "
               f"{len(report.kept)} kept, {report.rows} examples, {report.response_tokens} response tokens, "
               f"{report.bytes} bytes ({report.bytes / tokens:.1f} B/token; the cache: "
               f"{report.source_bytes / tokens:.1f})")


def _template_name(template) -> str:
    if isinstance(template, dict):
        return str(template.get("name"))
    return str(template)


def _responses_line(responses: dict | None) -> str:
    """Who wrote the cached responses: the teacher (generation), a dataset field or a rollout."""
    if responses is None:
        return "generated by the teacher"
    if responses.get("source") == "dataset_field":
        return f"scored from dataset field {responses.get('field')!r}"
    model = (responses.get("model") or {}).get("model")
    return (f"scored from rollout {responses.get('path')} ({responses.get('sha256')}) by {model}, "
            f"sampling {json.dumps(responses.get('sampling'), sort_keys=True)}")
