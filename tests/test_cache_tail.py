"""Cache format 2's tail column; a version-1 cache is refused in one line that says how to rebuild it.

tests/fixtures/v1_cache was written by the CacheWriter of commit 38392e0 (format 1, the
default compact encoding) from `tail_examples()`.
"""
import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cache_schema import (
    FORMAT_VERSION,
    CacheError,
    CacheReader,
    CacheVerifyError,
    CacheWriter,
    verify_cache,
)
from common.files import file_sha256
from stages.distill.batching import collate, fit_example
from tail_cache import FIXTURE_V1, IDENTITY, K, VOCAB, tail_examples


def write(path, examples, **kw):
    writer = CacheWriter.open(path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=4, **kw)
    for ex in examples:
        writer.add(ex)
    return writer.close()


def records(path):
    return {r.example_id: r for r in CacheReader(path)}


def exact_tails(example) -> np.ndarray:
    return np.array([1.0 - math.fsum(np.exp(row.astype(np.float64))) for row in example.topk_logprobs])


def test_writer_stores_the_tail_log_prob_and_the_manifest_says_version_2(tmp_path):
    examples = tail_examples()
    manifest = write(tmp_path, examples)
    assert FORMAT_VERSION == 2 and manifest.format_version == 2
    assert json.loads((tmp_path / "manifest.json").read_text())["format_version"] == 2
    shard = pq.read_table(tmp_path / manifest.shards[0].name)
    assert shard.schema.field("tail_logprob").type == pa.list_(pa.float32())
    read = records(tmp_path)
    tails = np.concatenate([exact_tails(ex) for ex in examples])
    stored = np.concatenate([read[ex.example_id].tail_logprob for ex in examples])
    assert stored.dtype == np.float32 and tails.min() < 6e-8  # some tails float32's mass cannot hold
    np.testing.assert_allclose(np.exp(stored.astype(np.float64)), tails, rtol=1e-6)
    from_mass = np.concatenate([1.0 - read[ex.example_id].topk_mass.astype(np.float64) for ex in examples])
    assert np.abs(from_mass / tails - 1).max() > 0.5  # what version 1 had to go on
    verify_cache(tmp_path)


def test_full_top_k_stores_minus_infinity(tmp_path):
    example = tail_examples(1)[0]
    example.topk_logprobs[:] = [0.0, -20.0, -21.0, -22.0]  # sums to 1 + 3e-9: the writer's float noise
    write(tmp_path, [example])
    tail = records(tmp_path)[example.example_id].tail_logprob
    assert np.isneginf(tail).all()
    verify_cache(tmp_path)


def test_a_version_1_cache_is_refused_by_every_reader_saying_how_to_rebuild_it(tmp_path):
    rebuild = "a format-1 cache .*rebuild it by rerunning the `akd teacher-cache` command that made it with --overwrite"
    with pytest.raises(CacheError, match=rebuild):
        CacheReader(FIXTURE_V1)
    with pytest.raises(CacheError, match=rebuild):
        verify_cache(FIXTURE_V1)
    copy = tmp_path / "v1"
    shutil.copytree(FIXTURE_V1, copy)
    with pytest.raises(CacheError, match=rebuild):  # resuming it would mix schemas
        CacheWriter.open(copy, IDENTITY, k=K, vocab_size=VOCAB)
    assert write(copy, tail_examples(), overwrite=True).format_version == FORMAT_VERSION == 2
    assert all(r.tail_logprob is not None for r in CacheReader(copy))


def _rewrite_shard(cache, change):
    manifest_path = cache / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    shard = cache / manifest["shards"][0]["name"]
    parquet = pq.ParquetFile(shard)
    pq.write_table(change(parquet.read()).replace_schema_metadata(parquet.schema_arrow.metadata), shard)
    manifest["shards"][0].update(bytes=shard.stat().st_size, sha256=file_sha256(shard))
    manifest_path.write_text(json.dumps(manifest))
    return shard


def test_verify_names_a_bad_or_missing_tail(tmp_path):
    write(tmp_path / "nan", tail_examples(2), encoding="compact-v1:ids=raw")  # no footer table to lose in the rewrite

    def nan_tail(table):
        column = table.column("tail_logprob").combine_chunks()
        values = column.values.to_numpy(zero_copy_only=False).copy()
        values[0] = np.nan
        index = table.schema.get_field_index("tail_logprob")
        return table.set_column(index, "tail_logprob", pa.ListArray.from_arrays(column.offsets, pa.array(values)))

    shard = _rewrite_shard(tmp_path / "nan", nan_tail)
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: tail_logprob holds NaN"):
        verify_cache(tmp_path / "nan")

    write(tmp_path / "gone", tail_examples(2), encoding="compact-v1:ids=raw")  # no footer table to lose in the rewrite
    shard = _rewrite_shard(tmp_path / "gone", lambda t: t.drop_columns(["tail_logprob"]))
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: schema differs from format v2"):
        verify_cache(tmp_path / "gone")
    with pytest.raises(CacheError, match=f"{shard.name}.*lacks the tail_logprob column"):
        list(CacheReader(tmp_path / "gone"))


def test_unknown_version_is_refused_by_name(tmp_path):
    write(tmp_path, tail_examples(1))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 3
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="format version 3 is not readable by this akd \\(it reads version 2\\)"):
        CacheReader(tmp_path)


def test_batches_carry_the_tail_to_the_student(tmp_path):
    write(tmp_path, tail_examples(3))
    batch = collate([fit_example(r, 5)[0] for r in CacheReader(tmp_path)])  # responses cut to fit
    assert batch["tail_logprob"].dtype == torch.float32
    assert batch["tail_logprob"].shape == batch["topk_mass"].shape == batch["target_ids"].shape
