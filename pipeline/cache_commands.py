"""`akd cache ...`: look into a teacher cache without the stages."""
from __future__ import annotations

import json

import click
import numpy as np

from cache_schema import CacheError, CacheReader, finalize_cache, verify_cache


@click.group("cache")
def cache_group():
    """Inspect, verify and finalize teacher caches."""


@cache_group.command("verify")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--no-checksums", is_flag=True, help="Skip the sha256 of every shard (faster).")
def verify_command(cache_dir, no_checksums):
    """Check every shard's checksum, schema and counts against the manifest."""
    try:
        report = verify_cache(cache_dir, check_checksums=not no_checksums)
    except CacheError as exc:
        raise click.ClickException(str(exc)) from None
    per_token = report.bytes / max(report.response_tokens, 1)
    click.echo(f"{cache_dir}: OK, {report.shards} shards, {report.rows} examples, "
               f"{report.response_tokens} response tokens, {report.bytes} bytes ({per_token:.1f} B/token)")


@cache_group.command("finalize")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False))
def finalize_command(cache_dir):
    """Merge the workers' part manifests into manifest.json once every worker is done."""
    try:
        manifest = finalize_cache(cache_dir)
    except CacheError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{cache_dir}: finalized {len(manifest.shards)} shards, {manifest.rows} examples")


@cache_group.command("inspect")
@click.argument("cache_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--examples", default=0, show_default=True, help="Also show the first N examples' token counts.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def inspect_command(cache_dir, examples, as_json):
    """Summarise a cache: who made it, how, how big, what was skipped."""
    try:
        reader = CacheReader(cache_dir)
    except CacheError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = reader.manifest
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


def _template_name(template) -> str:
    if isinstance(template, dict):
        return str(template.get("name"))
    return str(template)
