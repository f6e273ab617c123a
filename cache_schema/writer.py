"""Writes teacher answers into shards that appear only when complete, and resumes.

A shard is written under a temporary name, fsynced and renamed: a killed run leaves
complete shards and at most one temporary file, which the next run deletes. The examples
in complete shards are `done_ids`; the teacher skips them, so nothing is lost or written
twice. Each worker writes its own shards (`w003-00012.parquet`) and its own part manifest,
so several workers can fill one cache.

Caches are written in format version 2 (schema.py); an existing version-1 cache is refused
(Manifest.from_dict) until --overwrite starts it afresh.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.files import atomic_path, file_sha256
from common.machine import software_versions

from .encoding import DEFAULT_ENCODING, PAD_ID, PAD_LOGPROB, Rows, TopK, get_encoding
from .errors import CacheError, InvalidExampleError
from .manifest import (
    MANIFEST_NAME,
    PARTS_DIR,
    SHARDS_DIR,
    Manifest,
    ShardInfo,
    check_same_identity,
)
from .schema import FINISH_REASONS, FORMAT_VERSION, TAIL_FIELD, CachedExample, arrow_schema

SHARD_RE = re.compile(r"^w(\d{3})-(\d{5})\.parquet$")
LOGPROB_TOLERANCE = 1e-4  # log-probs may exceed 0 or break sort order by float noise only


class CacheWriter:
    """Use `CacheWriter.open(...)`, then `add` examples and `close`."""

    def __init__(self, cache_dir: Path, manifest: Manifest, worker_index: int, done_ids: set[str],
                 next_seq: int, rows_per_shard: int, max_shard_bytes: int, zstd_level: int):
        self.cache_dir = cache_dir
        self.manifest = manifest  # this worker's part
        self.worker_index = worker_index
        self.done_ids = done_ids
        self.encoding = get_encoding(manifest.encoding)
        self.schema = arrow_schema(self.encoding)
        self.rows_per_shard = rows_per_shard
        self.max_shard_bytes = max_shard_bytes
        self.zstd_level = zstd_level
        self._next_seq = next_seq
        self._rows: list[dict] = []
        self._buffered_bytes = 0

    # ---- opening and resuming -------------------------------------------------------
    @classmethod
    def open(cls, cache_dir, identity: dict, *, k: int, vocab_size: int, worker_index: int = 0,
             num_workers: int = 1, overwrite: bool = False, rows_per_shard: int = 256,
             max_shard_bytes: int = 64 << 20, encoding: str = DEFAULT_ENCODING,
             zstd_level: int = 9) -> "CacheWriter":
        cache_dir = Path(cache_dir)
        if not 0 <= worker_index < num_workers:
            raise CacheError(f"--worker-index {worker_index} is outside 0..{num_workers - 1}")
        if k < 1:
            raise CacheError(f"k must be at least 1, got {k}")
        encoding = get_encoding(encoding, "--encoding").spec  # every parameter spelled out, for the reader
        if overwrite and cache_dir.exists():
            _wipe_cache(cache_dir)
        existing = _existing_manifest(cache_dir)
        if existing is not None:
            check_same_identity(cache_dir, existing, identity, k, encoding, FORMAT_VERSION)
        (cache_dir / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        (cache_dir / PARTS_DIR).mkdir(exist_ok=True)
        _remove_stale_temporaries(cache_dir, worker_index)

        part_path = _part_path(cache_dir, worker_index)
        part = Manifest.load(part_path) if part_path.exists() else None
        known = {s.name: s for s in part.shards} if part else {}
        manifest = Manifest(identity=identity, k=k, vocab_size=vocab_size, encoding=encoding,
                            software=software_versions(), num_workers=num_workers,
                            format_version=FORMAT_VERSION, finished=False)
        done_ids: set[str] = set()
        next_seq = 0
        for shard_path in sorted((cache_dir / SHARDS_DIR).glob("w*.parquet")):
            match = SHARD_RE.match(shard_path.name)
            if not match:
                continue
            ids = pq.read_table(shard_path, columns=["example_id"]).column(0).to_pylist()
            done_ids.update(ids)
            if int(match.group(1)) == worker_index:
                name = f"{SHARDS_DIR}/{shard_path.name}"
                manifest.shards.append(known.get(name) or _describe_shard(shard_path, name, worker_index))
                next_seq = max(next_seq, int(match.group(2)) + 1)
        writer = cls(cache_dir, manifest, worker_index, done_ids, next_seq, rows_per_shard,
                     max_shard_bytes, zstd_level)
        writer._save_part()
        return writer

    # ---- adding examples ------------------------------------------------------------
    def add(self, example: CachedExample) -> None:
        """Validate and buffer one example; a full buffer becomes a shard."""
        row = self._encode(example)
        self.done_ids.add(example.example_id)
        self._rows.append(row)
        self._buffered_bytes += row.pop("_bytes")
        if len(self._rows) >= self.rows_per_shard or self._buffered_bytes >= self.max_shard_bytes:
            self.flush()

    def record_skipped(self, reason: str, count: int) -> None:
        """This run's count of rows skipped for `reason` (a resumed run recounts them all)."""
        self.manifest.skipped[reason] = int(count)

    def record_stats(self, stats: dict) -> None:
        self.manifest.stats.update(stats)

    def flush(self) -> None:
        if not self._rows:
            return
        table, footer = self._shard_table(self._rows)
        name = f"w{self.worker_index:03d}-{self._next_seq:05d}.parquet"
        final = self.cache_dir / SHARDS_DIR / name
        compression = _column_codecs(self.schema, self.encoding.precompressed_columns())
        with atomic_path(final, tmp_name=f".tmp-{name}") as tmp, pq.ParquetWriter(
            tmp, self.schema, compression=compression,
            compression_level={path: self.zstd_level for path, codec in compression.items() if codec == "zstd"},
            use_dictionary=["example_id", "finish_reason"],
            use_byte_stream_split=["outside_logprob", TAIL_FIELD.name,
                                   *self.encoding.byte_stream_split_columns()],
            write_statistics=False,
        ) as parquet:
            parquet.write_table(table, row_group_size=table.num_rows)
            if footer:  # shard-level state of the encoding, outside the Arrow schema copy
                parquet.add_key_value_metadata(footer)
        self.manifest.shards.append(_describe_shard(final, f"{SHARDS_DIR}/{name}", self.worker_index,
                                                    rows=table.num_rows))
        self._next_seq += 1
        self._rows = []
        self._buffered_bytes = 0
        self._save_part()

    def _shard_table(self, rows: list[dict]) -> tuple[pa.Table, dict[bytes, bytes]]:
        """The buffered rows as one table: base columns, then the encoding's top-k columns."""
        response = Rows.from_lists([r["response_ids"] for r in rows], np.int64)
        topk = TopK(ids=np.concatenate([r["topk_ids"] for r in rows]),
                    logprobs=np.concatenate([r["topk_logprobs"] for r in rows]),
                    mass=np.concatenate([r["topk_mass"] for r in rows]))
        columns, footer = self.encoding.encode(topk, response)
        for name in ("prompt_ids", "outside_pos"):
            columns[name] = Rows.from_lists([r[name] for r in rows], np.int32).to_arrow(pa.int32())
        columns["response_ids"] = Rows(response.values.astype(np.int32), response.offsets).to_arrow(pa.int32())
        for name in ("outside_logprob", TAIL_FIELD.name):
            columns[name] = Rows.from_lists([r[name] for r in rows], np.float32).to_arrow(pa.float32())
        columns["example_id"] = pa.array([r["example_id"] for r in rows], pa.string())
        columns["finish_reason"] = pa.array([r["finish_reason"] for r in rows], pa.string())
        return pa.Table.from_arrays([columns[f.name] for f in self.schema], schema=self.schema), footer

    def close(self) -> Manifest:
        """Flush the last shard, save this worker's part as finished; a single worker also finalizes."""
        self.flush()
        self.manifest.finished = True
        self._save_part()
        if self.manifest.num_workers == 1:
            from .finalize import finalize_cache

            return finalize_cache(self.cache_dir)
        return self.manifest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        return False

    # ---- internals ------------------------------------------------------------------
    def _save_part(self) -> None:
        self.manifest.save(_part_path(self.cache_dir, self.worker_index))

    def _encode(self, ex: CachedExample) -> dict:
        where = f"example {ex.example_id!r}"
        if not isinstance(ex.example_id, str) or not ex.example_id:
            raise InvalidExampleError(f"example id must be a non-empty string, got {ex.example_id!r}")
        if ex.example_id in self.done_ids:
            raise InvalidExampleError(f"{where} is already in the cache")
        if ex.finish_reason not in FINISH_REASONS:
            raise InvalidExampleError(f"{where}: finish reason {ex.finish_reason!r} is not one of {FINISH_REASONS}")
        k, vocab = self.manifest.k, self.manifest.vocab_size
        prompt = np.asarray(ex.prompt_ids, dtype=np.int64).reshape(-1)
        response = np.asarray(ex.response_ids, dtype=np.int64).reshape(-1)
        ids = np.asarray(ex.topk_ids, dtype=np.int64)
        logprobs = np.asarray(ex.topk_logprobs, dtype=np.float64)
        n = response.shape[0]
        if n == 0:
            raise InvalidExampleError(f"{where} has no response tokens")
        if ids.ndim != 2 or ids.shape != logprobs.shape or ids.shape[0] != n:
            raise InvalidExampleError(
                f"{where}: top-k ids {ids.shape} and log-probs {logprobs.shape} must both be "
                f"[{n} response tokens, <=k]")
        if ids.shape[1] > k:
            raise InvalidExampleError(f"{where}: {ids.shape[1]} top-k entries per position, more than k={k}")
        for label, values in (("prompt id", prompt), ("response id", response), ("top-k id", ids)):
            bad = (values < 0) | (values >= vocab)
            if bad.any():
                raise InvalidExampleError(
                    f"{where}: {label} {int(values[bad][0])} is outside the vocabulary [0, {vocab})")
        if not np.isfinite(logprobs).all():
            raise InvalidExampleError(f"{where}: top-k log-probs contain NaN or inf")
        if (logprobs > LOGPROB_TOLERANCE).any():
            raise InvalidExampleError(f"{where}: a top-k log-prob is above 0 ({logprobs.max():.4g})")
        if (np.diff(logprobs, axis=1) > LOGPROB_TOLERANCE).any():
            row = int(np.argwhere(np.diff(logprobs, axis=1) > LOGPROB_TOLERANCE)[0][0])
            raise InvalidExampleError(f"{where}: top-k list at position {row} is not sorted by probability")
        mass = np.exp(logprobs).sum(axis=1)
        if (mass > 1.0 + 1e-3).any():
            raise InvalidExampleError(f"{where}: top-k probabilities sum to {mass.max():.4f} > 1")
        if ids.shape[1] < k:  # fewer than k entries: pad with an id no token has
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=PAD_ID)
            logprobs = np.pad(logprobs, ((0, 0), (0, pad)), constant_values=PAD_LOGPROB)
        outside_pos, outside_lp = [], []
        if ex.sampled_logprobs is not None:
            sampled = np.asarray(ex.sampled_logprobs, dtype=np.float64).reshape(-1)
            if sampled.shape[0] != n or not np.isfinite(sampled).all():
                raise InvalidExampleError(f"{where}: sampled log-probs must be {n} finite values")
            missing = ~(ids == response[:, None]).any(axis=1)
            outside_pos = np.flatnonzero(missing).astype(np.int32)
            outside_lp = sampled[missing].astype(np.float32)
        row = {
            "example_id": ex.example_id,
            "prompt_ids": prompt,
            "response_ids": response,
            "finish_reason": ex.finish_reason,
            "topk_ids": ids,
            "topk_logprobs": logprobs.astype(np.float32),
            "topk_mass": np.minimum(mass, 1.0).astype(np.float32),
            "tail_logprob": tail_logprobs(mass).astype(np.float32),
            "outside_pos": np.asarray(outside_pos, dtype=np.int32),
            "outside_logprob": np.asarray(outside_lp, dtype=np.float32),
            "_bytes": 8 * (prompt.size + response.size) + ids.size * 12 + 8 * n,
        }
        return row


def tail_logprobs(topk_mass: np.ndarray) -> np.ndarray:
    """log(1 - topk_mass) in float64, -inf where the mass reaches 1.

    topk_mass must be the float64 sum of exp(l_j) over the unrounded log-probs: 1 - mass is then
    exact to about 1e-16, where the float32 mass of version 1 loses every tail below 6e-8.
    """
    with np.errstate(divide="ignore"):
        return np.log1p(-np.minimum(np.asarray(topk_mass, np.float64), 1.0))


def _column_codecs(schema: pa.Schema, precompressed: list[str]) -> dict[str, str]:
    """zstd for every Parquet column (list columns are named `name.list.element`), none for
    columns the encoding compressed itself."""
    def path(f: pa.Field) -> str:
        return f"{f.name}.list.element" if pa.types.is_list(f.type) else f.name

    return {path(f): "none" if f.name in precompressed else "zstd" for f in schema}


def _part_path(cache_dir: Path, worker_index: int) -> Path:
    return cache_dir / PARTS_DIR / f"worker-{worker_index:03d}.json"


def _existing_manifest(cache_dir: Path) -> Manifest | None:
    """The identity already on disk: the final manifest, else any worker's part."""
    if (cache_dir / MANIFEST_NAME).exists():
        return Manifest.load(cache_dir / MANIFEST_NAME)
    parts = sorted((cache_dir / PARTS_DIR).glob("worker-*.json")) if (cache_dir / PARTS_DIR).exists() else []
    if parts:
        return Manifest.load(parts[0])
    if (cache_dir / SHARDS_DIR).exists() and any((cache_dir / SHARDS_DIR).glob("*.parquet")):
        raise CacheError(f"{cache_dir} holds shards but no manifest; use --overwrite to replace it")
    return None


def _remove_stale_temporaries(cache_dir: Path, worker_index: int) -> None:
    for tmp in (cache_dir / SHARDS_DIR).glob(f".tmp-w{worker_index:03d}-*"):
        tmp.unlink()


def _wipe_cache(cache_dir: Path) -> None:
    for name in (MANIFEST_NAME, SHARDS_DIR, PARTS_DIR):
        path = cache_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _describe_shard(path: Path, name: str, worker: int, rows: int | None = None) -> ShardInfo:
    meta = pq.ParquetFile(path).metadata
    lengths = pq.read_table(path, columns=["response_ids"]).column(0)
    tokens = int(pc.sum(pc.list_value_length(lengths)).as_py() or 0)
    return ShardInfo(name=name, rows=meta.num_rows if rows is None else rows, response_tokens=tokens,
                     bytes=path.stat().st_size, sha256=file_sha256(path), worker=worker)
