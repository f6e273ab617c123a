"""Token ids as small codes: their rank in the shard's id frequency table.

A few thousand ids (whitespace, punctuation, common identifiers) fill most top-k lists, so
ranking a shard's ids by how often they occur makes most codes small, and the compressor
then codes each id in about its entropy (11-12 bits on real code data instead of 15-16).
The reader rebuilds the ranking from the shard's Parquet footer: the distinct ids (as gaps)
and their counts, packed as byte planes (byte_planes.py), base64 because Parquet metadata
is text.
"""
from __future__ import annotations

import base64

import numpy as np

from . import byte_planes

TABLE_KEY = b"akd.id_rank_table"


def rank_table(symbols: np.ndarray) -> tuple[np.ndarray, bytes]:
    """The frequency ranking of non-negative `symbols` (most frequent first, ties by value)
    and its footer value."""
    values, counts = np.unique(symbols, return_counts=True)
    payload = np.concatenate([np.diff(values, prepend=0), counts]).astype(np.uint32)
    return _ranking(values, counts), base64.b64encode(byte_planes.pack(payload, 4))


def read_rank_table(text: bytes) -> np.ndarray:
    """The ranking stored by `rank_table`."""
    payload = byte_planes.unpack(base64.b64decode(text), 4).astype(np.int64)
    if payload.size % 2:
        raise ValueError("id rank table is damaged (odd length)")
    gaps, counts = np.split(payload, 2)
    return _ranking(np.cumsum(gaps), counts)


def rank_codes(symbols: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """Each symbol's position in `ranking` (every symbol must be in it)."""
    lookup = np.zeros(int(ranking.max()) + 1 if ranking.size else 1, np.uint32)
    lookup[ranking] = np.arange(ranking.size, dtype=np.uint32)
    return lookup[symbols]


def _ranking(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return values[np.lexsort((values, -counts))]
