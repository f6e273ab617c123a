"""Streams a cache without loading it: shard by shard, record batch by record batch.

Shards are split among N readers by position in the sorted shard list (rank r of world w
takes shards r, r+w, ...), so every example is read by exactly one rank.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .encoding import Rows, get_encoding
from .errors import CacheError, CacheVerifyError
from .manifest import MANIFEST_NAME, Manifest, ShardInfo
from .progress import refuse_in_progress
from .schema import TAIL_FIELD, CacheRecord
from .verify import check_shard_file


class CacheReader:
    """`in_progress_ok`: read the sealed part of a cache that a run is still adding to (for
    looking at it); by default such a cache is refused (progress.py)."""

    def __init__(self, cache_dir, *, in_progress_ok: bool = False):
        self.cache_dir = Path(cache_dir)
        self.manifest = Manifest.load(self.cache_dir / MANIFEST_NAME)
        if not in_progress_ok:
            refuse_in_progress(self.cache_dir, self.manifest)
        self.encoding = get_encoding(self.manifest.encoding, self.cache_dir)
        self.k = self.manifest.k

    def shards_for(self, rank: int = 0, world: int = 1) -> list[ShardInfo]:
        if not 0 <= rank < world:
            raise CacheError(f"reader rank {rank} is outside 0..{world - 1}")
        return self.manifest.shards[rank::world]

    def iter_examples(self, rank: int = 0, world: int = 1, batch_rows: int = 64,
                      shards: list[ShardInfo] | None = None) -> Iterator[CacheRecord]:
        """Yield records of this rank's shards in manifest order."""
        for shard in shards if shards is not None else self.shards_for(rank, world):
            yield from self.iter_shard(shard, batch_rows)

    def check_shards(self, shards: list[ShardInfo] | None = None, checksums: bool = True) -> None:
        """Every shard (of `shards`) is the file the manifest lists: size and sha256, before any is used."""
        for shard in self.manifest.shards if shards is None else shards:
            check_shard_file(self.cache_dir / shard.name, shard, checksums)

    def iter_shard(self, shard: ShardInfo, batch_rows: int = 64) -> Iterator[CacheRecord]:
        """The shard's records; a file whose size or row count is not the manifest's is refused."""
        path = self.cache_dir / shard.name
        check_shard_file(path, shard, checksum=False)
        try:
            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows != shard.rows:
                raise CacheVerifyError(f"{path}: {parquet.metadata.num_rows} rows, the manifest says {shard.rows} "
                                       "(not this cache's shard)")
            state = self.encoding.shard_state(parquet.metadata.metadata or {})
            for batch in parquet.iter_batches(batch_size=batch_rows):
                yield from self._decode_batch(batch, shard.name, state)
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
            raise CacheError(f"{path}: cannot read shard ({exc}); run `akd cache verify {self.cache_dir}`") from None

    def __iter__(self):
        return self.iter_examples()

    def __len__(self) -> int:
        return self.manifest.rows

    def _decode_batch(self, batch, shard_name: str, state) -> Iterator[CacheRecord]:
        """Decode the whole batch's top-k at once (vectorised), then cut it into records."""
        lists = {name: Rows(_flat_values(col), _offsets(col)) if _is_list(col) else col.to_pylist()
                 for name, col in zip(batch.schema.names, batch.columns)}
        response = lists["response_ids"]
        topk = self.encoding.decode(lists, Rows(response.values.astype(np.int64), response.offsets),
                                    self.k, state)
        tail = lists.get(TAIL_FIELD.name)
        if tail is None:
            raise ValueError(f"the shard lacks the {TAIL_FIELD.name} column")
        ids = batch.column("example_id").to_pylist()
        reasons = batch.column("finish_reason").to_pylist()
        for i, example_id in enumerate(ids):
            tokens = slice(response.offsets[i], response.offsets[i + 1])
            yield CacheRecord(
                example_id=example_id,
                prompt_ids=lists["prompt_ids"].row(i).astype(np.int64),
                response_ids=response.row(i).astype(np.int64),
                topk_ids=topk.ids[tokens],
                topk_logprobs=topk.logprobs[tokens],
                topk_mass=topk.mass[tokens],
                finish_reason=reasons[i],
                shard=shard_name,
                outside_pos=lists["outside_pos"].row(i).astype(np.int64),
                outside_logprob=lists["outside_logprob"].row(i).astype(np.float32),
                tail_logprob=tail.row(i).astype(np.float32),
            )


def _is_list(column) -> bool:
    return pa.types.is_list(column.type)


def _flat_values(column) -> np.ndarray:
    return column.flatten().to_numpy(zero_copy_only=False)


def _offsets(column) -> np.ndarray:
    offsets = column.offsets.to_numpy()
    return offsets - offsets[0]  # a sliced list array's offsets need not start at 0
