"""common/files.py: the one atomic write, folder swap and file digest that all of akd uses."""
import hashlib
import os

import pytest

from common import files
from common.files import atomic_path, atomic_write, atomic_write_json, file_sha256, replace_dir


def test_atomic_write_text_bytes_and_json(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_json(tmp_path / "c.json", {"x": 1})
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.json").read_text() == '{\n  "x": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json"]  # no temporaries


def test_atomic_write_fsyncs_the_file_and_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    atomic_write(tmp_path / "a.txt", "x")
    assert len(synced) == 2 and synced[-1] == str(tmp_path)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "shard.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, tmp_name=".tmp-shard.parquet") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["shard.parquet"]


def test_replace_dir_swaps_an_existing_folder(tmp_path):
    final, staging = tmp_path / "model", tmp_path / ".tmp-model"
    final.mkdir()
    (final / "old.bin").write_text("old")
    staging.mkdir()
    (staging / "new.bin").write_text("new")
    assert replace_dir(staging, final) == final
    assert [p.name for p in final.iterdir()] == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_file_sha256_streams_past_one_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "CHUNK_BYTES", 7)
    data = bytes(range(256)) * 3
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_evaluation_files_are_fsynced(tmp_path, monkeypatch):
    """The evaluator's summaries used to be renamed into place without an fsync."""
    from stages.evaluate import run

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    run._write_json(tmp_path / "bench" / "summary.json", {"pass@1": 0.5})
    assert len(synced) == 2
