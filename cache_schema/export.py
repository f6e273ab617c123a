"""`akd cache export`: a teacher cache as plain Parquet columns that need no akd to read.

The cache's own encoding keeps the top-k as compressed blocks only akd decodes. The export
reads the cache through CacheReader (its public surface only) and writes one zstd Parquet
shard per source shard, under the same relative name, in one of the layouts of
export_layouts.py (`akd`: per response position; `axolotl`: Axolotl's KD columns over the
full sequence; the alignment of each is spelled out there), plus `akd-export.json`: the
source cache's identity (teacher, tokenizer fingerprint, k, templates, sampling, dataset),
the layout, its alignment rule and the shards.

A shard is written to a temporary name, fsynced and renamed, and carries in its footer the
sha256 of the source shard it came from; a rerun keeps every finished shard that matches
its source and layout and writes only the missing ones, so a stopped export resumes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from cache_schema import CacheError, CacheReader
from cache_schema.export_layouts import LAYOUTS, SCHEMAS, layout_table
from common.files import atomic_path, atomic_write_json
from common.settings import setting

EXPORT_FORMAT = "akd-cache-export"
EXPORT_VERSION = 1
SIDECAR_NAME = "akd-export.json"
FOOTER_SOURCE = b"akd.export.source_sha256"
FOOTER_LAYOUT = b"akd.export.layout"
ALIGNMENT = {
    "akd": "topk_*[j], topk_mass[j], tail_logprob[j]: the teacher distribution response token j was "
           "drawn from, p(. | prompt_ids + response_ids[:j]); the student's logits at index "
           "len(prompt_ids) + j - 1 of prompt_ids + response_ids predict it",
    "axolotl": "target_*[t]: the teacher distribution over input_ids[t + 1] (what the logits at t "
               "predict); response token j at row len(prompt_ids) + j - 1; target_mask[t] = 0 where "
               "labels[t + 1] == -100, on the last row and on padded entries",
}


@dataclass
class ExportConfig:
    layout: str = setting("akd", choices=LAYOUTS, help=(
        "akd: per response position, raw log-probs, top-k mass and log tail mass; axolotl: "
        "Axolotl's KD columns (input_ids, labels, target_token_ids/target_logprobs/target_mask) "
        "over the full sequence, row t predicting input_ids[t+1], log-probs renormalised over the top-k."))
    zstd_level: int = setting(9, help="zstd level of the Parquet pages (1 fastest .. 22 smallest).")
    batch_rows: int = setting(256, help="Examples per Parquet row group (bounds the memory an export needs).")
    overwrite: bool = setting(False, help="Replace an export of another cache or layout found in OUT.")


@dataclass
class ExportReport:
    out_dir: Path
    layout: str
    written: list[str] = field(default_factory=list)  # shards written by this run
    kept: list[str] = field(default_factory=list)  # finished shards a previous run left
    rows: int = 0
    response_tokens: int = 0
    bytes: int = 0  # of the exported shards
    source_bytes: int = 0  # of the cache's shards


def export_cache(cache_dir, out_dir, config: ExportConfig | None = None,
                 on_shard: Callable[[str, bool, int], None] | None = None) -> ExportReport:
    """Export every shard of the cache at `cache_dir` into `out_dir`.

    on_shard(name, written, total) is called after each shard (written False: kept from before).
    """
    config = config or ExportConfig()
    if config.layout not in LAYOUTS:
        raise CacheError(f"unknown export layout {config.layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not 1 <= config.zstd_level <= 22 or config.batch_rows < 1:
        raise CacheError(f"--zstd-level must be 1..22 and --batch-rows at least 1 "
                         f"(got {config.zstd_level} and {config.batch_rows})")
    cache_dir, out_dir = Path(cache_dir), Path(out_dir)
    if not cache_dir.is_dir():
        what = "does not exist" if not cache_dir.exists() else "is not a directory"
        raise CacheError(f"{cache_dir}: {what} (expected a teacher cache: manifest.json + shards/)")
    reader = CacheReader(cache_dir)
    if out_dir.exists() and out_dir.resolve() == cache_dir.resolve():
        raise CacheError(f"{out_dir}: the export would overwrite the cache's own shards; choose another OUT")
    plan = _sidecar(reader, config.layout)
    _prepare_out_dir(out_dir, plan, config.overwrite)
    atomic_write_json(out_dir / SIDECAR_NAME, plan)

    report = ExportReport(out_dir=out_dir, layout=config.layout)
    for shard in reader.manifest.shards:
        target = _inside(out_dir, shard.name)
        if _finished(target, shard.sha256, config.layout, shard.rows):
            report.kept.append(shard.name)
        else:
            _write_shard(reader, shard, target, config)
            report.written.append(shard.name)
        report.rows += shard.rows
        report.response_tokens += shard.response_tokens
        report.bytes += target.stat().st_size
        report.source_bytes += shard.bytes
        if on_shard:
            on_shard(shard.name, shard.name in report.written, len(reader.manifest.shards))
    plan["complete"] = True
    plan["totals"] = {"rows": report.rows, "response_tokens": report.response_tokens, "bytes": report.bytes,
                      "source_bytes": report.source_bytes}
    atomic_write_json(out_dir / SIDECAR_NAME, plan)
    return report


def _sidecar(reader: CacheReader, layout: str) -> dict:
    manifest = reader.manifest
    return {
        "format": EXPORT_FORMAT,
        "export_version": EXPORT_VERSION,
        "layout": layout,
        "alignment": ALIGNMENT[layout],
        "columns": [f"{f.name}: {f.type}" for f in SCHEMAS[layout]],
        "source": {
            "cache_dir": str(reader.cache_dir.resolve()),
            "format_version": manifest.format_version,
            "encoding": manifest.encoding,
            "k": manifest.k,
            "vocab_size": manifest.vocab_size,
            "identity": manifest.identity,
            "shards": [{"name": s.name, "rows": s.rows, "response_tokens": s.response_tokens,
                        "sha256": s.sha256} for s in manifest.shards],
        },
        "complete": False,
    }


def _prepare_out_dir(out_dir: Path, plan: dict, overwrite: bool) -> None:
    """Refuse (or, with overwrite, clear) an OUT that holds something other than this export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CacheError(f"{out_dir}: exists and is not a directory")
    sidecar = out_dir / SIDECAR_NAME
    if sidecar.exists():
        try:
            found = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise CacheError(f"{sidecar}: not valid JSON ({exc}); remove it or choose another OUT") from None
        diff = _first_difference(_what_it_exports(plan), _what_it_exports(found))
        if diff and not overwrite:
            raise CacheError(f"{out_dir} holds another export ({diff}); use --overwrite or another OUT")
        if diff:
            _remove_export(out_dir, found)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise CacheError(f"{out_dir}: not empty and holds no akd export ({SIDECAR_NAME}); choose an empty OUT")
    out_dir.mkdir(parents=True, exist_ok=True)
    for shard in plan["source"]["shards"]:  # a killed run's half-written shards
        for tmp in _inside(out_dir, shard["name"]).parent.glob(".tmp-*.parquet"):
            tmp.unlink()


def _what_it_exports(sidecar: dict) -> dict:
    """Format, layout and source of an export, without where the source lies (a moved cache is
    the same cache)."""
    source = {k: v for k, v in (sidecar.get("source") or {}).items() if k != "cache_dir"}
    return {"format": sidecar.get("format"), "export_version": sidecar.get("export_version"),
            "layout": sidecar.get("layout"), "source": source}


def _first_difference(wanted, found, where: str = "") -> str | None:
    """The first dotted key where two sidecars differ, worded for the user."""
    if isinstance(wanted, dict) and isinstance(found, dict):
        for key in [*wanted, *(k for k in found if k not in wanted)]:
            diff = _first_difference(wanted.get(key), found.get(key), f"{where}.{key}" if where else key)
            if diff:
                return diff
        return None
    if wanted == found:
        return None
    shown = [_short(json.dumps(v)) for v in (found, wanted)]
    return f"{where}: OUT has {shown[0]}, this export has {shown[1]}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _remove_export(out_dir: Path, sidecar: dict) -> None:
    """Delete only what an export wrote: the shards its sidecar lists, and the sidecar."""
    for shard in (sidecar.get("source") or {}).get("shards", []):
        path = _inside(out_dir, shard.get("name", ""))
        if path.is_file():
            path.unlink()
    (out_dir / SIDECAR_NAME).unlink()


def _inside(out_dir: Path, name: str) -> Path:
    path = out_dir / name
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CacheError(f"shard name {name!r} would leave the export directory")
    return path


def _finished(path: Path, source_sha256: str, layout: str, rows: int) -> bool:
    """True when `path` is a complete export of that source shard in that layout."""
    if not path.is_file():
        return False
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, ValueError):
        return False
    footer = meta.metadata or {}
    return (footer.get(FOOTER_SOURCE) == source_sha256.encode() and footer.get(FOOTER_LAYOUT) == layout.encode()
            and meta.num_rows == rows)


def _write_shard(reader: CacheReader, shard, target: Path, config: ExportConfig) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    schema = SCHEMAS[config.layout].with_metadata({FOOTER_SOURCE: shard.sha256.encode(),
                                                   FOOTER_LAYOUT: config.layout.encode()})
    # Plain pages + zstd: every Parquet reader decodes them, and on the test caches they came out
    # as small as BYTE_STREAM_SPLIT floats and smaller than dictionary pages (akd-layout 67 B/token
    # either way; axolotl layout 99 against 128 with dictionaries).
    strings = [f.name for f in schema if f.type == pa.string()]
    with atomic_path(target, tmp_name=f".tmp-{target.name}") as tmp, pq.ParquetWriter(
            tmp, schema, compression="zstd", compression_level=config.zstd_level, use_dictionary=strings,
            write_statistics=False) as parquet:
        batch = []
        for record in reader.iter_shard(shard):
            batch.append(record)
            if len(batch) >= config.batch_rows:
                parquet.write_table(layout_table(config.layout, batch))
                batch = []
        if batch:
            parquet.write_table(layout_table(config.layout, batch))
