"""How the top-k ids and log-probabilities of a response are laid out in Parquet.

Each encoding turns one example's `[n, k]` ids and log-probs into a few list columns and
back. The manifest records the encoding's name, so a reader decodes any encoding in
`ENCODINGS` whatever the writer's default is today.

- `int32-f16`: the baseline: ids as int32, log-probs as float16 (byte-stream-split + zstd).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PAD_ID = -1  # a position with fewer than k entries is padded with this id


@dataclass(frozen=True)
class Int32Float16:
    """Baseline encoding: exact ids, log-probs rounded to float16 (|error| <= 0.004 for p >= 1e-3)."""

    name: str = "int32-f16"

    def fields(self) -> list[pa.Field]:
        return [
            pa.field("topk_ids", pa.list_(pa.int32())),
            pa.field("topk_logprobs", pa.list_(pa.float16())),
        ]

    def byte_stream_split_columns(self) -> list[str]:
        return ["topk_ids", "topk_logprobs"]

    def encode(self, ids: np.ndarray, logprobs: np.ndarray) -> dict:
        return {
            "topk_ids": pa.array(ids.reshape(-1).astype(np.int32), pa.int32()),
            "topk_logprobs": pa.array(logprobs.reshape(-1).astype(np.float16), pa.float16()),
        }

    def decode(self, columns: dict[str, np.ndarray], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """columns hold one example's flat values; returns ids [n, k] int64, log-probs [n, k] float32."""
        ids = columns["topk_ids"].astype(np.int64).reshape(n, k)
        logprobs = columns["topk_logprobs"].astype(np.float32).reshape(n, k)
        return ids, logprobs


ENCODINGS = {enc.name: enc for enc in (Int32Float16(),)}
DEFAULT_ENCODING = "int32-f16"


def get_encoding(name: str):
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown cache encoding {name!r}; this akd knows {sorted(ENCODINGS)}") from None
