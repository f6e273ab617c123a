"""Checks a cache against its manifest and names the first faulty shard."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.files import file_sha256

from .encoding import get_encoding
from .errors import CacheVerifyError
from .manifest import MANIFEST_NAME, SHARDS_DIR, Manifest, ShardInfo
from .progress import refuse_in_progress
from .schema import TAIL_FIELD, arrow_schema


@dataclass
class VerifyReport:
    shards: int
    rows: int
    response_tokens: int
    bytes: int


def verify_cache(cache_dir, check_checksums: bool = True) -> VerifyReport:
    """Raise CacheVerifyError naming the shard whose file, checksum, schema or counts are wrong."""
    cache_dir = Path(cache_dir)
    manifest = Manifest.load(cache_dir / MANIFEST_NAME)
    refuse_in_progress(cache_dir, manifest, then="verify it")
    encoding = get_encoding(manifest.encoding, cache_dir)
    expected_columns = _column_types(arrow_schema(encoding))
    listed = set()
    seen_ids: set[str] = set()
    for shard in manifest.shards:
        path = cache_dir / shard.name
        listed.add(path.name)
        check_shard_file(path, shard, check_checksums)
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise CacheVerifyError(f"{path}: unreadable Parquet ({exc})") from None
        if _column_types(table.schema) != expected_columns:  # by name: older shards order them differently
            raise CacheVerifyError(f"{path}: schema differs from format v{manifest.format_version} "
                                   f"encoding {manifest.encoding}")
        try:
            encoding.shard_state(pq.ParquetFile(path).metadata.metadata or {})
        except ValueError as exc:
            raise CacheVerifyError(f"{path}: {exc}") from None
        tokens = int(pc.sum(pc.list_value_length(table.column("response_ids"))).as_py() or 0)
        if table.num_rows != shard.rows or tokens != shard.response_tokens:
            raise CacheVerifyError(f"{path}: {table.num_rows} rows / {tokens} tokens, manifest says "
                                   f"{shard.rows} / {shard.response_tokens}")
        _check_tail(path, table.column(TAIL_FIELD.name))
        ids = table.column("example_id").to_pylist()
        duplicates = seen_ids.intersection(ids)
        if duplicates or len(set(ids)) != len(ids):
            raise CacheVerifyError(f"{path}: example {sorted(duplicates or ids)[0]!r} appears more than once")
        seen_ids.update(ids)
    unlisted = sorted(p.name for p in (cache_dir / SHARDS_DIR).glob("*.parquet") if p.name not in listed)
    if unlisted:
        raise CacheVerifyError(f"{cache_dir / SHARDS_DIR / unlisted[0]}: shard not in the manifest "
                               "(an unfinished multi-worker run? run finalize)")
    return VerifyReport(shards=len(manifest.shards), rows=manifest.rows,
                        response_tokens=manifest.response_tokens, bytes=manifest.bytes)


def check_shard_file(path: Path, shard: ShardInfo, checksum: bool = True) -> None:
    """Raise CacheVerifyError unless the file at `path` is the shard the manifest lists: present,
    of its size and (`checksum`) its sha256. A shard copied in from another cache fails here."""
    if not path.exists():
        raise CacheVerifyError(f"{path}: shard listed in the manifest is missing")
    if path.stat().st_size != shard.bytes:
        raise CacheVerifyError(f"{path}: {path.stat().st_size} bytes, manifest says {shard.bytes} "
                               "(truncated, or not this cache's shard)")
    if checksum and file_sha256(path) != shard.sha256:
        raise CacheVerifyError(f"{path}: sha256 does not match the manifest (corrupt, or not this cache's shard)")


def _check_tail(path: Path, column) -> None:
    """Version 2's tail log-probs are log-probabilities: never NaN, never above 0 (-inf is a full top-k)."""
    values = pc.list_flatten(column)
    if pc.any(pc.or_(pc.is_nan(values), pc.greater(values, 0.0))).as_py():
        raise CacheVerifyError(f"{path}: tail_logprob holds NaN or a value above 0")


def _column_types(schema) -> dict:
    return {f.name: f.type for f in schema}  # pyarrow's type equality ignores list item names
