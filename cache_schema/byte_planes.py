"""Small unsigned integers packed as LZMA-compressed byte planes.

Parquet's codecs (zstd, brotli) code bytes with static per-block tables and leave ids and
log-prob codes 20-30% above their entropy; LZMA's adaptive range coder gets within a few
percent of it (measured on real teacher data, benchmarks/bench_cache.py). Splitting the
values into byte planes (all low bytes, then all second bytes, ...) puts bytes of like
statistics side by side: the high planes of small codes are nearly all zero and cost almost
nothing. Each block is compressed alone (raw LZMA2, no container), so a row decodes by itself.
"""
from __future__ import annotations

import lzma

import numpy as np

_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20, "lc": 0, "lp": 0, "pb": 0}]


def pack(values: np.ndarray, width: int) -> bytes:
    """Unsigned values < 256**width -> compressed bytes of their `width` low byte planes."""
    values = np.ascontiguousarray(values, dtype="<u4").reshape(-1)
    if values.size and int(values.max()) >> (8 * width):
        raise ValueError(f"value {int(values.max())} does not fit in {width} bytes")
    planes = values.view(np.uint8).reshape(-1, 4)[:, :width].T.tobytes()
    return lzma.compress(planes, format=lzma.FORMAT_RAW, filters=_FILTERS)


def unpack(blob: bytes, width: int) -> np.ndarray:
    """Inverse of `pack`: uint32 values."""
    planes = np.frombuffer(lzma.decompress(blob, format=lzma.FORMAT_RAW, filters=_FILTERS), np.uint8)
    if planes.size % width:
        raise ValueError(f"a block of {planes.size} bytes is not {width}-byte values")
    values = np.zeros((planes.size // width, 4), np.uint8)
    values[:, :width] = planes.reshape(width, -1).T
    return values.view("<u4").reshape(-1)
