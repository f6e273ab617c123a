"""How the top-k ids, log-probabilities and top-k mass of a shard are laid out in Parquet.

An encoding turns the top-k data of many rows (a shard when writing, a record batch when
reading) into a few list columns and back, and may keep shard-level state (a frequency
table) in the Parquet footer. The manifest records the encoding's spec (its name and
parameters, e.g. `compact-v1:ids=freq,top1=skip`), so a reader decodes any encoding it
knows whatever the writer's default is today.

- `int32-f16`: the first format: ids as int32, log-probs as float16, mass as float32.
- `compact-v1`: ids coded by per-shard frequency rank without the top-1 id where it is the
  response token, log-probs quantised on a grid and delta-coded, both LZMA-compressed per
  row; mass as float32 ulps below 1 (see compact_encoding.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from .compact_encoding import CompactEncoding
from .errors import CacheError
from .topk_arrays import PAD_ID, PAD_LOGPROB, Rows, TopK  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Int32Float16:
    """The first format: exact ids, log-probs rounded to float16 (|error| <= 0.004 for p >= 1e-3)."""

    name: ClassVar[str] = "int32-f16"

    @property
    def spec(self) -> str:
        return self.name

    def fields(self) -> list[pa.Field]:
        return [
            pa.field("topk_mass", pa.list_(pa.float32())),
            pa.field("topk_ids", pa.list_(pa.int32())),
            pa.field("topk_logprobs", pa.list_(pa.float16())),
        ]

    def byte_stream_split_columns(self) -> list[str]:
        return ["topk_mass", "topk_ids", "topk_logprobs"]

    def precompressed_columns(self) -> list[str]:
        return []

    def encode(self, topk: TopK, response: Rows) -> tuple[dict[str, pa.Array], dict[str, bytes]]:
        k = topk.ids.shape[1]
        offsets = response.offsets * k
        columns = {
            "topk_mass": Rows(topk.mass.astype(np.float32), response.offsets).to_arrow(pa.float32()),
            "topk_ids": Rows(topk.ids.reshape(-1).astype(np.int32), offsets).to_arrow(pa.int32()),
            "topk_logprobs": Rows(topk.logprobs.reshape(-1).astype(np.float16), offsets).to_arrow(pa.float16()),
        }
        return columns, {}

    def shard_state(self, footer: dict[bytes, bytes]) -> None:
        return None

    def decode(self, columns: dict[str, Rows], response: Rows, k: int, state: None) -> TopK:
        n = len(response.values)
        return TopK(ids=columns["topk_ids"].values.astype(np.int64).reshape(n, k),
                    logprobs=columns["topk_logprobs"].values.astype(np.float32).reshape(n, k),
                    mass=columns["topk_mass"].values.astype(np.float32))


FAMILIES = {"int32-f16": Int32Float16, "compact-v1": CompactEncoding}
DEFAULT_ENCODING = "compact-v1"
ENCODINGS = tuple(FAMILIES)  # the encoding names this akd reads


def get_encoding(spec: str):
    """The encoding a spec names: `name` or `name:key=value,key=value` (parameters of that name)."""
    name, _, params_text = spec.partition(":")
    if name not in FAMILIES:
        raise CacheError(f"unknown cache encoding {spec!r}; this akd knows {sorted(FAMILIES)}")
    params = {}
    for item in filter(None, params_text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise CacheError(f"cache encoding {spec!r}: parameter {item!r} is not key=value")
        params[key.strip()] = value.strip()
    try:
        return FAMILIES[name](**params)
    except (TypeError, ValueError) as exc:
        raise CacheError(f"cache encoding {spec!r}: {exc}") from None
