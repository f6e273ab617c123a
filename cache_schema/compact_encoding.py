"""`compact-v1`: the top-k data in about half the bytes of akd's first encoding (int32 ids, float16
log-probs, retired), same fidelity bound.

Measured on a real code teacher (benchmarks/bench_cache.py): ids are most of the bytes, and
most of each top-k list carries almost no mass. So, per row:

- ids: the top-1 id is left out where it is the response token (always, under greedy
  decoding; `top1=skip` lists the other positions in `top1_miss_pos` / `top1_miss_id`);
  the rest become codes, `ids=freq` their rank in the shard's id frequency table
  (id_codes.py) or `ids=raw` id + 1 (0 = padding); the codes of the row, position by
  position, are one LZMA block of byte planes (byte_planes.py);
- log-probs: grid codes, delta-coded along each list (logprob_codes.py; `fine`, `coarse`,
  `deep` are the grid steps in nats: the error stays under 0.01 nats for p >= 1e-3), rank by
  rank (all top-1 deltas, then all rank-2 ...: like magnitudes together), one LZMA block;
- mass: the float32 top-k mass as its distance to 1.0 in float32 steps (ulps below 1): the
  same float32 value, exactly, but a small integer when the tail is small (zstd + BSS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from . import byte_planes
from .id_codes import TABLE_KEY, rank_codes, rank_table, read_rank_table
from .logprob_codes import LogprobGrid
from .topk_arrays import PAD_ID, PAD_LOGPROB, Rows, TopK

_ONE_BITS = np.float32(1.0).view(np.uint32)  # float32 mass m <= 1 is stored as bits(1) - bits(m)
_CHOICES = {"ids": ("freq", "raw"), "top1": ("skip", "keep")}
ID_BYTES = 3  # codes below 2**24: any vocabulary up to 16.7M tokens
DELTA_BYTES = 2


@dataclass(frozen=True)
class CompactEncoding:
    ids: str = "freq"
    top1: str = "skip"
    fine: float = 0.0196
    coarse: float = 0.2
    deep: float = 0.5
    grid: LogprobGrid = field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "compact-v1"

    def __post_init__(self):
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r} is not one of {allowed}")
        for key in ("fine", "coarse", "deep"):
            object.__setattr__(self, key, float(getattr(self, key)))
        object.__setattr__(self, "grid", LogprobGrid(self.fine, self.coarse, self.deep))

    @property
    def spec(self) -> str:
        return (f"{self.name}:ids={self.ids},top1={self.top1},"
                f"fine={self.fine:g},coarse={self.coarse:g},deep={self.deep:g}")

    def fields(self) -> list[pa.Field]:
        fields = [pa.field("topk_mass_ulps", pa.list_(pa.uint32())),
                  pa.field("topk_id_block", pa.binary()),
                  pa.field("topk_logprob_block", pa.binary())]
        if self.top1 == "skip":
            fields += [pa.field("top1_miss_pos", pa.list_(pa.int32())),
                       pa.field("top1_miss_id", pa.list_(pa.int32()))]
        return fields

    def byte_stream_split_columns(self) -> list[str]:
        return ["topk_mass_ulps"]

    def precompressed_columns(self) -> list[str]:
        return ["topk_id_block", "topk_logprob_block"]

    # ---- writing ----------------------------------------------------------------------
    def encode(self, topk: TopK, response: Rows) -> tuple[dict[str, pa.Array], dict[bytes, bytes]]:
        symbols = topk.ids + 1  # PAD_ID -> 0
        columns: dict[str, pa.Array] = {}
        if self.top1 == "skip":
            miss = symbols[:, 0] != response.values + 1
            row_of = np.repeat(np.arange(len(response.lengths)), response.lengths)
            position = np.arange(len(response.values)) - response.offsets[:-1][row_of]
            offsets = np.concatenate([[0], np.cumsum(np.bincount(row_of[miss], minlength=len(response.lengths)))])
            columns["top1_miss_pos"] = Rows(position[miss].astype(np.int32), offsets).to_arrow(pa.int32())
            columns["top1_miss_id"] = Rows(topk.ids[miss, 0].astype(np.int32), offsets).to_arrow(pa.int32())
            symbols = symbols[:, 1:]
        footer: dict[bytes, bytes] = {}
        codes = symbols
        if self.ids == "freq":
            ranking, footer[TABLE_KEY] = rank_table(symbols.reshape(-1))
            codes = rank_codes(symbols, ranking)
        deltas = self.grid.encode(topk.logprobs)
        spans = [slice(a, b) for a, b in zip(response.offsets[:-1], response.offsets[1:])]
        columns["topk_id_block"] = pa.array([byte_planes.pack(codes[s], ID_BYTES) for s in spans], pa.binary())
        columns["topk_logprob_block"] = pa.array([byte_planes.pack(deltas[s].T, DELTA_BYTES) for s in spans],
                                                 pa.binary())
        ulps = _ONE_BITS - np.minimum(topk.mass, 1.0).astype(np.float32).view(np.uint32)
        columns["topk_mass_ulps"] = Rows(ulps, response.offsets).to_arrow(pa.uint32())
        return columns, footer

    # ---- reading ----------------------------------------------------------------------
    def shard_state(self, footer: dict[bytes, bytes]):
        """The id ranking of one shard (None when ids are stored raw)."""
        if self.ids != "freq":
            return None
        if TABLE_KEY not in footer:
            raise ValueError(f"shard footer lacks the id rank table {TABLE_KEY.decode()!r}")
        return read_rank_table(footer[TABLE_KEY])

    def decode(self, columns: dict, response: Rows, k: int, ranking) -> TopK:
        n = len(response.values)
        width = k - 1 if self.top1 == "skip" else k
        codes = _concat([byte_planes.unpack(b, ID_BYTES) for b in columns["topk_id_block"]], n * width)
        symbols = ranking[codes] if ranking is not None else codes.astype(np.int64)
        ids = np.empty((n, k), np.int64)
        ids[:, k - width:] = symbols.reshape(n, width) - 1
        if self.top1 == "skip":
            ids[:, 0] = response.values
            pos, miss_ids = columns["top1_miss_pos"], columns["top1_miss_id"]
            row_of = np.repeat(np.arange(len(pos.lengths)), pos.lengths)
            ids[response.offsets[:-1][row_of] + pos.values, 0] = miss_ids.values
        deltas = [byte_planes.unpack(b, DELTA_BYTES).reshape(k, -1).T for b in columns["topk_logprob_block"]]
        logprobs = self.grid.decode(np.concatenate(deltas) if deltas else np.zeros((0, k), np.uint32))
        if logprobs.shape != (n, k):
            raise ValueError(f"log-prob blocks hold {logprobs.shape} values for {n} positions of k={k}")
        logprobs[ids == PAD_ID] = PAD_LOGPROB
        mass = (_ONE_BITS - columns["topk_mass_ulps"].values.astype(np.uint32)).view(np.float32)
        return TopK(ids=ids, logprobs=logprobs, mass=mass)


def _concat(blocks: list[np.ndarray], expected: int) -> np.ndarray:
    values = np.concatenate(blocks) if blocks else np.zeros(0, np.uint32)
    if values.size != expected:
        raise ValueError(f"id blocks hold {values.size} codes, expected {expected}")
    return values
