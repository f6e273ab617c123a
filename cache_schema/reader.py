"""Streams a cache without loading it: shard by shard, record batch by record batch.

Shards are split among N readers by position in the sorted shard list (rank r of world w
takes shards r, r+w, ...), so every example is read by exactly one rank.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from .encoding import get_encoding
from .errors import CacheError
from .manifest import MANIFEST_NAME, Manifest, ShardInfo
from .schema import CacheRecord


class CacheReader:
    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self.manifest = Manifest.load(self.cache_dir / MANIFEST_NAME)
        self.encoding = get_encoding(self.manifest.encoding)
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

    def iter_shard(self, shard: ShardInfo, batch_rows: int = 64) -> Iterator[CacheRecord]:
        path = self.cache_dir / shard.name
        try:
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=batch_rows):
                yield from self._decode_batch(batch, shard.name)
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
            raise CacheError(f"{path}: cannot read shard ({exc}); run `akd cache verify {self.cache_dir}`") from None

    def __iter__(self):
        return self.iter_examples()

    def __len__(self) -> int:
        return self.manifest.rows

    def _decode_batch(self, batch, shard_name: str) -> Iterator[CacheRecord]:
        columns = {name: batch.column(name) for name in batch.schema.names}
        flat = {name: _flat_values(col) for name, col in columns.items() if _is_list(col)}
        offsets = {name: _offsets(col) for name, col in columns.items() if _is_list(col)}
        ids = columns["example_id"].to_pylist()
        reasons = columns["finish_reason"].to_pylist()
        k = self.k
        enc_names = [f.name for f in self.encoding.fields()]
        for i, example_id in enumerate(ids):
            def row(name):
                return flat[name][offsets[name][i]:offsets[name][i + 1]]

            response = row("response_ids").astype(np.int64)
            n = response.shape[0]
            topk_ids, topk_logprobs = self.encoding.decode({name: row(name) for name in enc_names}, n, k)
            yield CacheRecord(
                example_id=example_id,
                prompt_ids=row("prompt_ids").astype(np.int64),
                response_ids=response,
                topk_ids=topk_ids,
                topk_logprobs=topk_logprobs,
                topk_mass=row("topk_mass").astype(np.float32),
                finish_reason=reasons[i],
                shard=shard_name,
                outside_pos=row("outside_pos").astype(np.int64),
                outside_logprob=row("outside_logprob").astype(np.float32),
            )


def _is_list(column) -> bool:
    return hasattr(column, "offsets")


def _flat_values(column) -> np.ndarray:
    return column.flatten().to_numpy(zero_copy_only=False)


def _offsets(column) -> np.ndarray:
    offsets = column.offsets.to_numpy()
    return offsets - offsets[0]  # a sliced list array's offsets need not start at 0
