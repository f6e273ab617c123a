"""How the top-k ids, log-probabilities and top-k mass of a shard are laid out in Parquet.

An encoding turns the top-k data of many rows (a shard when writing, a record batch when
reading) into a few list columns and back, and may keep shard-level state (a frequency
table) in the Parquet footer. The manifest records the encoding's spec (its name and
parameters, e.g. `compact-v1:ids=freq,top1=skip`), so a reader decodes any encoding it
knows whatever the writer's default is today. (The first encoding, `int32-f16`, is refused
in one line that says to rebuild the cache.)

- `compact-v1`: ids coded by per-shard frequency rank without the top-1 id where it is the
  response token, log-probs quantised on a grid and delta-coded, both LZMA-compressed per
  row; mass as float32 ulps below 1 (see compact_encoding.py).
"""
from __future__ import annotations

from .compact_encoding import CompactEncoding
from .errors import CacheError
from .topk_arrays import PAD_ID, PAD_LOGPROB, Rows, TopK  # noqa: F401  (re-exported)


FAMILIES = {"compact-v1": CompactEncoding}
# Encodings akd wrote once and reads no more: only tests held caches in them.
RETIRED = {"int32-f16": "akd's first encoding (ids as int32, log-probs as float16), replaced by compact-v1"}
DEFAULT_ENCODING = "compact-v1"
ENCODINGS = tuple(FAMILIES)  # the encoding names this akd reads


def get_encoding(spec: str, where=None):
    """The encoding a spec names: `name` or `name:key=value,key=value` (parameters of that name).
    `where`: the cache folder, named first in any error."""
    at = f"{where}: " if where else ""
    name, _, params_text = spec.partition(":")
    if name in RETIRED:
        raise CacheError(f"{at}cache encoding {name!r} ({RETIRED[name]}) is no longer written or read; "
                         "a cache in it must be rebuilt: rerun the command that made it with --overwrite")
    if name not in FAMILIES:
        raise CacheError(f"{at}unknown cache encoding {spec!r}; this akd knows {sorted(FAMILIES)}")
    params = {}
    for item in filter(None, params_text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise CacheError(f"{at}cache encoding {spec!r}: parameter {item!r} is not key=value")
        params[key.strip()] = value.strip()
    try:
        return FAMILIES[name](**params)
    except (TypeError, ValueError) as exc:
        raise CacheError(f"{at}cache encoding {spec!r}: {exc}") from None
