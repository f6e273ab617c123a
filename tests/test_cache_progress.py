"""A cache that a run is still adding to, or whose shards are not the manifest's, is never read
as if it were sealed (issue 21): readers refuse it in one line, verify says to rerun the run,
finalize will not seal it."""
import json

import pytest
from click.testing import CliRunner
from test_cache_schema import IDENTITY, VOCAB, K, make_example, write_cache

from cache_schema import (
    CacheInProgressError,
    CacheReader,
    CacheVerifyError,
    CacheWriter,
    finalize_cache,
    verify_cache,
)
from pipeline.cli import main


def extend_and_die(path, first: int, last: int):
    """A run that adds examples first..last-1 to the cache and is killed before it closes."""
    writer = CacheWriter.open(path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=3)
    for i in range(first, last):
        writer.add(make_example(i))
    return writer  # never closed: what kill -9 leaves


def test_a_killed_extension_is_refused_by_every_reader_and_a_rerun_seals_it(tmp_path):
    cache = tmp_path / "c"
    write_cache(cache, [make_example(i) for i in range(4)])
    extend_and_die(cache, 4, 11)  # two new shards written, one example still buffered
    with pytest.raises(CacheInProgressError, match=r"part-way .*worker 0 \(2 new shards.*seals 4 examples.*rerun"):
        CacheReader(cache)
    with pytest.raises(CacheInProgressError, match="rerun the command that was building it"):
        verify_cache(cache)
    with pytest.raises(CacheInProgressError, match="worker-000.json has not finished"):
        finalize_cache(cache)
    for args in (["cache", "verify", cache], ["cache", "finalize", cache]):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 1 and result.output.startswith("Error: CacheInProgressError: "), result.output
    looked = CliRunner().invoke(main, ["cache", "inspect", str(cache)])
    assert looked.exit_code == 0 and "examples     4" in looked.output and "part-way" in looked.output
    assert len(CacheReader(cache, in_progress_ok=True)) == 4  # the sealed part, when asked for

    writer = CacheWriter.open(cache, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=3)  # the rerun
    for i in range(4, 11):
        if f"ds:{i}:0" not in writer.done_ids:
            writer.add(make_example(i))
    writer.close()
    assert sorted(r.example_id for r in CacheReader(cache)) == sorted(f"ds:{i}:0" for i in range(11))
    verify_cache(cache)


def test_a_run_that_died_before_writing_a_shard_leaves_the_cache_readable(tmp_path):
    cache = tmp_path / "c"
    write_cache(cache, [make_example(i) for i in range(4)])
    extend_and_die(cache, 4, 5)  # opened, one example buffered, nothing flushed
    assert len(CacheReader(cache)) == 4
    verify_cache(cache)


def test_finalize_waits_for_every_worker_to_finish(tmp_path):
    cache = tmp_path / "c"
    for worker in (0, 1):
        writer = CacheWriter.open(cache, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=2, worker_index=worker,
                                  num_workers=2)
        for i in range(worker, 8, 2):
            writer.add(make_example(i))
        if worker == 0:
            writer.close()
    with pytest.raises(CacheInProgressError, match="worker-001.json has not finished"):
        finalize_cache(cache)


def test_a_part_written_before_the_finished_field_reads_as_finished(tmp_path):
    cache = tmp_path / "c"
    write_cache(cache, [make_example(i) for i in range(4)])
    part = cache / "parts" / "worker-000.json"
    data = json.loads(part.read_text())
    del data["finished"]
    part.write_text(json.dumps(data))
    assert finalize_cache(cache).rows == 4 and len(CacheReader(cache)) == 4


@pytest.fixture
def two_caches(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_cache(a, [make_example(i) for i in range(6)])
    write_cache(b, [make_example(i) for i in range(100, 106)])
    return a, b


def test_a_shard_copied_in_from_another_cache_is_refused_naming_it(two_caches):
    a, b = two_caches
    shard = a / "shards" / "w000-00001.parquet"
    shard.write_bytes((b / "shards" / "w000-00001.parquet").read_bytes())
    reader = CacheReader(a)
    with pytest.raises(CacheVerifyError, match=f"{shard}: .*not this cache's shard"):
        reader.check_shards()
    with pytest.raises(CacheVerifyError, match=str(shard)):
        list(reader)  # reading it without the upfront check still compares size and rows


def test_a_same_size_shard_with_other_bytes_fails_the_checksum(two_caches):
    a, _ = two_caches
    shard = a / "shards" / "w000-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheVerifyError, match=f"{shard}: sha256 does not match"):
        CacheReader(a).check_shards()


def test_distill_refuses_a_cache_a_run_is_still_adding_to_in_one_line(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    write_cache(cache, [make_example(i) for i in range(4)])
    extend_and_die(cache, 4, 11)
    monkeypatch.setattr("pipeline.distill_command.resolve_model", lambda spec, *_, **__: spec)  # no model needed
    result = CliRunner().invoke(main, ["distill", "--cache", str(cache), "--student", "x/y",
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "Error: CacheInProgressError: " in result.output, result.output
    assert not (tmp_path / "runs").exists()
