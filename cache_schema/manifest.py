"""The manifest: what is needed to trust and reuse a cache.

A cache directory holds `manifest.json`, `shards/*.parquet` and, while workers fill it,
`parts/worker-III.json` (one per worker, rewritten after each of its shards; `finished` once
its run has ended). `finalize` merges the parts into `manifest.json` once every part is
finished; the reader trusts only `manifest.json`, and only while no unfinished run has
written shards beside it (progress.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from common.files import atomic_write_json

from .errors import CacheError, CacheMismatchError
from .schema import FORMAT_VERSION

MANIFEST_NAME = "manifest.json"
SHARDS_DIR = "shards"
PARTS_DIR = "parts"


@dataclass
class ShardInfo:
    name: str  # path relative to the cache directory
    rows: int
    response_tokens: int
    bytes: int
    sha256: str
    worker: int = 0


@dataclass
class Manifest:
    identity: dict  # teacher, tokenizer fingerprint, templates, sampling, dataset
    k: int
    vocab_size: int
    encoding: str
    shards: list[ShardInfo] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    software: dict = field(default_factory=dict)
    num_workers: int = 1
    format_version: int = FORMAT_VERSION  # of the shards' schema (schema.py)
    format: str = "akd-teacher-cache"
    updated: str = ""
    # a worker's part: False from the moment its run opens the cache until the run ends
    # (parts written before this field existed read as finished, as their runs were)
    finished: bool = True

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def response_tokens(self) -> int:
        return sum(s.response_tokens for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["totals"] = {"rows": self.rows, "response_tokens": self.response_tokens, "bytes": self.bytes}
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> "Manifest":
        if data.get("format") != "akd-teacher-cache":
            raise CacheError(f"{source}: not an akd teacher-cache manifest")
        version = data.get("format_version")
        if version == 1:
            raise CacheError(f"{source}: a format-1 cache (no tail log-probs; akd reads format "
                             f"{FORMAT_VERSION} only): rebuild it by rerunning the `akd teacher-cache` "
                             "command that made it with --overwrite")
        if version != FORMAT_VERSION:
            raise CacheError(f"{source}: cache format version {version} is not readable by this akd "
                             f"(it reads version {FORMAT_VERSION})")
        data = {k: v for k, v in data.items() if k != "totals"}
        data["shards"] = [ShardInfo(**s) for s in data.get("shards", [])]
        return cls(**data)

    def save(self, path: Path) -> None:
        self.updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CacheError(f"{path}: no manifest (not a teacher cache, or its run never finished)") from None
        except json.JSONDecodeError as exc:
            raise CacheError(f"{path}: manifest is not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))


def identity_difference(expected: dict, found: dict, prefix: str = "") -> str | None:
    """The first field (dotted path) where two identities differ, or None."""
    for key in sorted(set(expected) | set(found)):
        a, b = expected.get(key), found.get(key)
        where = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diff = identity_difference(a, b, where + ".")
            if diff:
                return diff
        elif a != b:
            return f"{where}: cache has {_short(b)}, this run has {_short(a)}"
    return None


def check_same_identity(cache_dir: Path, existing: Manifest, identity: dict, k: int, encoding: str,
                        format_version: int) -> None:
    """Refuse to add shards of other settings, or of another format version, to a cache."""
    wanted = {"identity": identity, "k": k, "encoding": encoding, "format_version": format_version}
    found = {"identity": existing.identity, "k": existing.k, "encoding": existing.encoding,
             "format_version": existing.format_version}
    diff = identity_difference(wanted, found)
    if diff:
        raise CacheMismatchError(
            f"{cache_dir} was made with different settings ({diff}); "
            "use another output directory or --overwrite to replace it"
        )


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
