"""The arrays every encoding turns into columns and back: flattened rows and top-k blocks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PAD_ID = -1  # a position with fewer than k entries is padded with this id
PAD_LOGPROB = -1e4  # and this log-prob


@dataclass
class Rows:
    """Several rows of one list column, flattened: row i is values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray
    offsets: np.ndarray  # [rows + 1], offsets[0] == 0

    @classmethod
    def from_lists(cls, lists: list[np.ndarray], dtype) -> "Rows":
        offsets = np.zeros(len(lists) + 1, np.int64)
        np.cumsum([len(x) for x in lists], out=offsets[1:])
        values = np.concatenate(lists).astype(dtype, copy=False) if lists else np.zeros(0, dtype)
        return cls(values, offsets)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def to_arrow(self, value_type: pa.DataType) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)),
                                        pa.array(self.values, value_type))


@dataclass
class TopK:
    """Top-k data of several rows, their positions concatenated in row order.

    ids [N, k] int64 (PAD_ID where a position had fewer than k entries), logprobs [N, k]
    float32 (PAD_LOGPROB there), mass [N] float32: the top-k mass from unrounded log-probs.
    """

    ids: np.ndarray
    logprobs: np.ndarray
    mass: np.ndarray
