"""The responses file: what `akd rollout` writes and score mode (`--responses-from`) reads.

A directory: `responses.json` (who made the responses: model, revision, tokenizer
fingerprint, template, sampling settings, dataset; its shards with row counts and sha256;
skipped rows) and `shards/NNNNN.parquet` with one row per response:
example_id (string, "<tag>:<row>:<sample>" as in the cache), prompt_ids and response_ids
(list<int32>, the rollout model's own ids, end-of-turn token included when it stopped on it)
and finish_reason ("stop" or "length").

Shards appear only when complete (temporary name, fsync, rename) and responses.json is
rewritten after each one, so a killed rollout resumes after its last complete shard.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from cache_schema.manifest import identity_difference
from common.files import atomic_path, atomic_write_json, file_sha256

from .config import TeacherConfigError

FORMAT = "akd-responses"
VERSION = 1
HEADER_NAME = "responses.json"
SHARDS_DIR = "shards"
FINISH_REASONS = ("stop", "length")
SCHEMA = pa.schema([pa.field("example_id", pa.string()),
                    pa.field("prompt_ids", pa.list_(pa.int32())),
                    pa.field("response_ids", pa.list_(pa.int32())),
                    pa.field("finish_reason", pa.string())])


class ResponsesFileError(TeacherConfigError):
    """A responses file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Response:
    example_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    finish_reason: str


class ResponsesWriter:
    """`ResponsesWriter.open(dir, identity)`, `add` responses, `close`. `done_ids` are the
    examples of complete shards: a rerun skips them."""

    def __init__(self, root: Path, header: dict, rows_per_shard: int):
        self.root = root
        self.header = header
        self.rows_per_shard = rows_per_shard
        self.done_ids = {i for s in header["shards"] for i in _shard_ids(root / s["name"])}
        self._rows: list[Response] = []

    @classmethod
    def open(cls, root, identity: dict, *, overwrite: bool = False,
             rows_per_shard: int = 256) -> "ResponsesWriter":
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ResponsesFileError(f"--out {root}: exists and is not a directory")
        header_path = root / HEADER_NAME
        if overwrite and root.exists():
            for shard in (root / SHARDS_DIR).glob("*.parquet") if (root / SHARDS_DIR).exists() else []:
                shard.unlink()
            header_path.unlink(missing_ok=True)
        if header_path.exists():
            existing = _load_header(header_path)
            diff = identity_difference(identity, existing["identity"])
            if diff:
                raise ResponsesFileError(f"{root} holds responses made with other settings ({diff}); "
                                         "use another --out or --overwrite")
        elif (root / SHARDS_DIR).exists() and any((root / SHARDS_DIR).glob("*.parquet")):
            raise ResponsesFileError(f"{root} holds shards but no {HEADER_NAME}; use --overwrite")
        (root / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        for tmp in (root / SHARDS_DIR).glob(".tmp-*"):
            tmp.unlink()
        # The shards on disk are the truth: one renamed before the header was rewritten counts.
        shards = [{"name": f"{SHARDS_DIR}/{p.name}", "rows": pq.ParquetFile(p).metadata.num_rows,
                   "sha256": file_sha256(p)}
                  for p in sorted((root / SHARDS_DIR).glob("[0-9]*.parquet"))]
        header = {"format": FORMAT, "version": VERSION, "identity": identity, "shards": shards,
                  "skipped": {}, "complete": False}
        writer = cls(root, header, rows_per_shard)
        writer._save()
        return writer

    def add(self, response: Response) -> None:
        if response.example_id in self.done_ids:
            raise ResponsesFileError(f"{self.root}: example {response.example_id!r} written twice")
        if response.finish_reason not in FINISH_REASONS:
            raise ResponsesFileError(f"{self.root}: finish reason {response.finish_reason!r} "
                                     f"of {response.example_id!r} is not one of {FINISH_REASONS}")
        self.done_ids.add(response.example_id)
        self._rows.append(response)
        if len(self._rows) >= self.rows_per_shard:
            self.flush()

    def record_skipped(self, skipped: dict) -> None:
        self.header["skipped"] = {k: int(v) for k, v in sorted(skipped.items())}

    def flush(self) -> None:
        if not self._rows:
            return
        table = pa.table({
            "example_id": [r.example_id for r in self._rows],
            "prompt_ids": [list(r.prompt_ids) for r in self._rows],
            "response_ids": [list(r.response_ids) for r in self._rows],
            "finish_reason": [r.finish_reason for r in self._rows]}, schema=SCHEMA)
        name = f"{len(self.header['shards']):05d}.parquet"
        final = self.root / SHARDS_DIR / name
        with atomic_path(final, tmp_name=f".tmp-{name}") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self.header["shards"].append({"name": f"{SHARDS_DIR}/{name}", "rows": table.num_rows,
                                      "sha256": file_sha256(final)})
        self._rows = []
        self._save()

    def close(self) -> dict:
        self.flush()
        self.header["complete"] = True
        self._save()
        return self.header

    def _save(self) -> None:
        atomic_write_json(self.root / HEADER_NAME, self.header)


class ResponsesFile:
    """A finished responses file, checked against its header when opened."""

    def __init__(self, path):
        self.root = Path(path)
        header_path = self.root / HEADER_NAME
        if not header_path.exists():
            raise ResponsesFileError(f"--responses-from {self.root}: not a responses file "
                                     f"(no {HEADER_NAME}; `akd rollout --out` makes one)")
        self.header = _load_header(header_path)
        if not self.header.get("complete"):
            raise ResponsesFileError(f"{self.root}: the rollout that writes it has not finished "
                                     "(rerun the same `akd rollout` command to complete it)")
        for shard in self.header["shards"]:
            path = self.root / shard["name"]
            if not path.exists() or file_sha256(path) != shard["sha256"]:
                raise ResponsesFileError(f"{path}: missing or changed since the rollout wrote it "
                                         "(sha256 differs from responses.json)")

    @property
    def identity(self) -> dict:
        return self.header["identity"]

    @property
    def sha256(self) -> str:
        """One digest for the whole file: over its shards' sha256 in order."""
        digest = hashlib.sha256()
        for shard in self.header["shards"]:
            digest.update(f"{shard['name']}:{shard['sha256']}\n".encode())
        return "sha256:" + digest.hexdigest()

    def __iter__(self) -> Iterator[Response]:
        for shard in self.header["shards"]:
            table = pq.read_table(self.root / shard["name"])
            for row in table.to_pylist():
                yield Response(row["example_id"], row["prompt_ids"], row["response_ids"],
                               row["finish_reason"])


def _load_header(path: Path) -> dict:
    try:
        header = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResponsesFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ResponsesFileError(f"{path}: not an {FORMAT} header")
    if header.get("version") != VERSION:
        raise ResponsesFileError(f"{path}: format version {header.get('version')}, "
                                 f"this akd reads version {VERSION}")
    return header


def _shard_ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["example_id"]).column(0).to_pylist()
