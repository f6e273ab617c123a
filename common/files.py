"""File writes that a crash cannot leave half done, and file digests: written once for all of akd.

A file is written under a temporary name in its own folder, flushed, fsynced and renamed
over the final name, then the folder is fsynced so the rename itself survives a power cut:
readers see the old file or the new one, never half of one. A folder is swapped the same
way (`replace_dir`). Temporary names start with a dot; the callers that resume after a
kill (cache shards, checkpoints) name theirs so that they can find and delete leftovers.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from common.errors import error_chain, first_line

CHUNK_BYTES = 1 << 20
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NEARLY_FULL_BYTES = 16 << 20
# How libraries that do not raise OSError say it: torch.save's C++ writer, safetensors' Rust one.
_FULL_WORDS = ("No space left on device", "StorageFull", "os error 28", "Disk quota exceeded")


class DiskFullError(OSError):
    """The device under a folder akd writes is full: say which folder, and how to go on."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) reports a full device or an exhausted quota."""
    return any(isinstance(e, OSError) and e.errno in _FULL_ERRNOS or any(word in str(e) for word in _FULL_WORDS)
               for e in error_chain(exc))


def nearly_full(folder: Path | str) -> bool:
    """Whether the device under `folder` (or its nearest existing parent) has under NEARLY_FULL_BYTES
    free: torch.save says only "unexpected pos 576 vs 534" when it runs out of room."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < NEARLY_FULL_BYTES
    except OSError:
        return False


@contextmanager
def names_full_disk(folder: Path | str, then: str) -> Iterator[None]:
    """Turn a full disk met while writing under `folder` into one DiskFullError naming it.

    `then`: what the user does once space is free (e.g. "rerun the same command: it resumes
    from the last complete shard"). What was written before stays: every akd write is atomic.
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        # torch.save's writer raises a RuntimeError that does not say why: ask the device
        if not (is_disk_full(exc) or isinstance(exc, (OSError, RuntimeError)) and nearly_full(folder)):
            raise
        full = DiskFullError(f"no space left on the device that holds {folder} "
                             f"({type(exc).__name__}: {first_line(exc)[:120]}); "
                             f"free some space there, then {then}")
        full.errno = errno.ENOSPC
        raise full from None


def fsync_dir(directory: Path | str) -> None:
    """Make a rename (or a new entry) in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path | str) -> None:
    """Flush a file that someone else (a library writer) closed to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: Path | str, tmp_name: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it becomes `path` (fsynced,
    renamed, folder fsynced), on an exception it is removed and `path` is untouched.

    `tmp_name`: a fixed temporary name (for callers that clean up a killed run's leftovers);
    default: one unique to this process and call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(tmp_name or f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path | str, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes so that readers never see half of it."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_write_json(path: Path | str, obj, **dumps_kwargs) -> None:
    """`obj` as indented JSON with a final newline, written atomically."""
    atomic_write(path, json.dumps(obj, indent=2, **dumps_kwargs) + "\n")


def replace_dir(staging: Path | str, final: Path | str, *, fsync_files: bool = True) -> Path:
    """Swap the finished folder `staging` into `final`, so `final` never holds a half-written one.

    An existing `final` is moved aside first and deleted only after the swap: a crash between
    the two renames leaves the old folder beside the new one, never neither. `fsync_files`:
    flush every file under `staging` first (skip it for folders that can be rebuilt)."""
    staging, final = Path(staging), Path(final)
    if fsync_files:
        for path in staging.rglob("*"):
            if path.is_file():
                fsync_file(path)
    old = final.with_name(f".tmp-old-{final.name}")  # .tmp-*: swept by the checkpoint cleanup
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    fsync_dir(final.parent)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()
    return final


def file_sha256(path: Path | str) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (files here run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
