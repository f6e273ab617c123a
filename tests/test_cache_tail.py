"""Cache format 2's tail column, and version-1 caches read and train exactly as before.

tests/fixtures/v1_cache was written by the CacheWriter of commit 38392e0 (format 1, the
default compact encoding) from `tail_examples()`; the loss values below were computed by
that commit's code on that cache and are compared bit for bit.
"""
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cache_schema import (
    FORMAT_VERSION,
    CacheError,
    CacheMismatchError,
    CacheReader,
    CacheVerifyError,
    CacheWriter,
    finalize_cache,
    verify_cache,
)
from common.files import file_sha256
from stages.distill.batching import collate, fit_example
from stages.distill.losses import LossConfig, topk_distill_loss_from_logits
from tail_cache import FIXTURE_V1, IDENTITY, K, VOCAB, student_logits, tail_examples

# (loss, sum of squared logit gradients) of LossConfig(kind, ce_weight=0.1) on the fixture's one
# batch, by commit 38392e0 (before format 2)
# Recorded by the code that wrote format 1 (float32 loss, float64 sum of squared gradients). The
# bits depend on the CPU's vector width (AVX-512 and AVX2 sum in other orders: the gradient's
# last 7 significant digits differ), so they are compared to float32 precision: a change in
# what the loss computes moves them by far more.
V1_TOLERANCE = 1e-6
V1_LOSSES = {
    "fkl": ("0x1.f976780000000p+2", "0x1.3050a85929296p-5"),
    "rkl": ("0x1.4e06a20000000p+3", "0x1.0babc76c5c8e2p-7"),
    "akd": ("0x1.2588ba0000000p+3", "0x1.d59a34517377cp-7"),
}


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


def test_v1_fixture_reads_verifies_and_trains_as_before():
    reader = CacheReader(FIXTURE_V1)
    assert reader.manifest.format_version == 1
    assert all(r.tail_logprob is None for r in reader)
    verify_cache(FIXTURE_V1)
    batch = collate([fit_example(r, 64)[0] for r in reader])
    assert batch["tail_logprob"] is None
    for kind, (loss_hex, grad_hex) in V1_LOSSES.items():
        z = student_logits(batch["topk_ids"].shape[0]).requires_grad_()
        loss, _ = topk_distill_loss_from_logits(z, batch["topk_ids"], batch["topk_logprobs"], batch["topk_mass"],
                                                batch["target_ids"], LossConfig(kind=kind, ce_weight=0.1),
                                                tail_logprob=batch["tail_logprob"])
        loss.backward()
        assert loss.item() == pytest.approx(float.fromhex(loss_hex), rel=V1_TOLERANCE), kind
        assert z.grad.double().square().sum().item() == pytest.approx(float.fromhex(grad_hex), rel=V1_TOLERANCE), kind


def test_writer_flag_writes_what_version_1_wrote(tmp_path):
    manifest = write(tmp_path, tail_examples(), format_version=1)
    assert manifest.format_version == 1
    assert "tail_logprob" not in pq.read_table(tmp_path / manifest.shards[0].name).schema.names
    verify_cache(tmp_path)
    old, new = records(FIXTURE_V1), records(tmp_path)
    assert old.keys() == new.keys()
    for key, rec in old.items():
        assert new[key].tail_logprob is None
        for field in ("prompt_ids", "response_ids", "topk_ids", "topk_logprobs", "topk_mass"):
            np.testing.assert_array_equal(getattr(new[key], field), getattr(rec, field))


def test_a_cache_keeps_the_version_it_was_begun_in(tmp_path):
    """An existing version-1 cache (e.g. the README's, from before format 2) resumes as version 1,
    so `make distill` keeps working on it; asking for version 2 there is refused by name."""
    examples = tail_examples(4)
    write(tmp_path, examples[:2], format_version=1)
    with pytest.raises(CacheMismatchError, match="format_version: cache has 1, this run has 2"):
        CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB, format_version=2)
    resumed = write(tmp_path, examples[2:])
    assert resumed.format_version == 1 and resumed.rows == 4
    assert all(r.tail_logprob is None for r in CacheReader(tmp_path))
    verify_cache(tmp_path)
    assert write(tmp_path, examples, overwrite=True).format_version == 2
    with pytest.raises(CacheError, match="version 3 cannot be written"):
        CacheWriter.open(tmp_path / "new", IDENTITY, k=K, vocab_size=VOCAB, format_version=3)


def test_finalize_keeps_the_workers_version(tmp_path):
    examples = tail_examples(4)
    for worker in (0, 1):
        writer = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB, worker_index=worker, num_workers=2,
                                  format_version=1)
        for ex in examples[worker::2]:
            writer.add(ex)
        writer.close()
    assert finalize_cache(tmp_path).format_version == 1
    assert all(r.tail_logprob is None for r in CacheReader(tmp_path))
    verify_cache(tmp_path)


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
    write(tmp_path / "nan", tail_examples(2), encoding="int32-f16")

    def nan_tail(table):
        column = table.column("tail_logprob").combine_chunks()
        values = column.values.to_numpy(zero_copy_only=False).copy()
        values[0] = np.nan
        index = table.schema.get_field_index("tail_logprob")
        return table.set_column(index, "tail_logprob", pa.ListArray.from_arrays(column.offsets, pa.array(values)))

    shard = _rewrite_shard(tmp_path / "nan", nan_tail)
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: tail_logprob holds NaN"):
        verify_cache(tmp_path / "nan")

    write(tmp_path / "gone", tail_examples(2), encoding="int32-f16")
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
    with pytest.raises(CacheError, match="format version 3 is not readable by this akd \\(knows versions 1, 2\\)"):
        CacheReader(tmp_path)


def test_batches_carry_the_tail_to_the_student(tmp_path):
    write(tmp_path, tail_examples(3))
    batch = collate([fit_example(r, 5)[0] for r in CacheReader(tmp_path)])  # responses cut to fit
    assert batch["tail_logprob"].dtype == torch.float32
    assert batch["tail_logprob"].shape == batch["topk_mass"].shape == batch["target_ids"].shape
