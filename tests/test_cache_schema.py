"""The cache contract: round trip, the writer's rejections, resume, workers, verify."""
import numpy as np
import pytest

from cache_schema import (
    CacheError,
    CacheMismatchError,
    CacheReader,
    CacheVerifyError,
    CacheWriter,
    CachedExample,
    InvalidExampleError,
    finalize_cache,
    verify_cache,
)

VOCAB, K = 500, 4
IDENTITY = {"teacher": {"model": "tiny", "revision": "r1"}, "tokenizer_fingerprint": "sha256:abc",
            "templates": {"teacher": "plain", "student": "plain"}, "sampling": {"temperature": 0.0},
            "dataset": {"path": "x.json"}}


def make_example(i: int, n: int = 6, rng=None) -> CachedExample:
    rng = rng or np.random.default_rng(i)
    logits = rng.normal(size=(n, VOCAB)) * 3
    logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    order = np.argsort(-logprobs, axis=1)[:, :K]
    top_lp = np.take_along_axis(logprobs, order, axis=1).astype(np.float32)
    return CachedExample(example_id=f"ds:{i}:0", prompt_ids=list(rng.integers(0, VOCAB, 5)),
                         response_ids=list(order[:, 0]), topk_ids=order, topk_logprobs=top_lp,
                         finish_reason="stop", sampled_logprobs=top_lp[:, 0])


def write_cache(path, examples, **kw):
    writer = CacheWriter.open(path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=3, **kw)
    for ex in examples:
        writer.add(ex)
    return writer.close()


def test_round_trip_keeps_ids_exact_and_logprobs_close(tmp_path):
    examples = [make_example(i) for i in range(7)]
    manifest = write_cache(tmp_path / "c", examples)
    assert [s.rows for s in manifest.shards] == [3, 3, 1]
    assert manifest.response_tokens == 42
    records = {r.example_id: r for r in CacheReader(tmp_path / "c")}
    assert set(records) == {e.example_id for e in examples}
    for ex in examples:
        rec = records[ex.example_id]
        np.testing.assert_array_equal(rec.topk_ids, ex.topk_ids)
        np.testing.assert_array_equal(rec.response_ids, ex.response_ids)
        np.testing.assert_array_equal(rec.prompt_ids, ex.prompt_ids)
        keep = ex.topk_logprobs >= np.log(1e-3)
        assert np.abs(rec.topk_logprobs - ex.topk_logprobs)[keep].max() <= 0.01
        # the top-k mass comes from unrounded log-probs, at float32
        np.testing.assert_allclose(rec.topk_mass, np.exp(ex.topk_logprobs.astype(np.float64)).sum(1), rtol=1e-6)
    verify_cache(tmp_path / "c")


@pytest.mark.parametrize("mutate, message", [
    (lambda e: e.topk_logprobs.__setitem__((0, 1), np.nan), "NaN or inf"),
    (lambda e: e.topk_logprobs.__setitem__((0, 0), -np.inf), "NaN or inf"),
    (lambda e: e.topk_ids.__setitem__((1, 2), VOCAB + 3), "outside the vocabulary"),
    (lambda e: e.topk_logprobs.__setitem__((2, slice(None)), e.topk_logprobs[2, ::-1].copy()), "not sorted"),
    (lambda e: setattr(e, "finish_reason", "eos"), "finish reason"),
    (lambda e: setattr(e, "topk_ids", np.zeros((6, K + 1), dtype=np.int64)), "must both be"),
])
def test_writer_rejects_bad_examples(tmp_path, mutate, message):
    ex = make_example(0)
    mutate(ex)
    writer = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB)
    with pytest.raises(InvalidExampleError, match=message):
        writer.add(ex)


def test_writer_rejects_more_than_k_entries(tmp_path):
    ex = make_example(0)
    ex.topk_ids = np.concatenate([ex.topk_ids, ex.topk_ids[:, :1]], axis=1)
    ex.topk_logprobs = np.concatenate([ex.topk_logprobs, ex.topk_logprobs[:, -1:] - 1], axis=1)
    writer = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB)
    with pytest.raises(InvalidExampleError, match="more than k=4"):
        writer.add(ex)


def test_fewer_than_k_entries_are_padded(tmp_path):
    ex = make_example(0)
    ex.topk_ids, ex.topk_logprobs = ex.topk_ids[:, :2], ex.topk_logprobs[:, :2]
    write_cache(tmp_path, [ex])
    rec = next(iter(CacheReader(tmp_path)))
    assert (rec.topk_ids[:, 2:] == -1).all() and (rec.topk_ids[:, :2] == ex.topk_ids).all()


def test_resume_skips_done_examples_and_drops_unfinished_shard(tmp_path):
    examples = [make_example(i) for i in range(8)]
    writer = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=3)
    for ex in examples[:5]:  # one full shard written, two rows buffered: "killed" here
        writer.add(ex)
    (tmp_path / "shards" / ".tmp-w000-00001.parquet").write_bytes(b"half a shard")
    resumed = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=3)
    assert resumed.done_ids == {e.example_id for e in examples[:3]}
    assert not list((tmp_path / "shards").glob(".tmp-*"))
    for ex in examples:
        if ex.example_id not in resumed.done_ids:
            resumed.add(ex)
    resumed.close()
    ids = [r.example_id for r in CacheReader(tmp_path)]
    assert sorted(ids) == sorted(e.example_id for e in examples)
    verify_cache(tmp_path)


def test_duplicate_example_is_refused(tmp_path):
    write_cache(tmp_path, [make_example(0)])
    writer = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB)
    with pytest.raises(InvalidExampleError, match="already in the cache"):
        writer.add(make_example(0))


@pytest.mark.parametrize("field, change", [("teacher", {"model": "other", "revision": "r1"}),
                                           ("tokenizer_fingerprint", "sha256:def")])
def test_cache_of_other_settings_is_refused_unless_overwrite(tmp_path, field, change):
    write_cache(tmp_path, [make_example(0)])
    other = {**IDENTITY, field: change}
    with pytest.raises(CacheMismatchError, match=field):
        CacheWriter.open(tmp_path, other, k=K, vocab_size=VOCAB)
    with pytest.raises(CacheMismatchError, match="k: cache has 4"):
        CacheWriter.open(tmp_path, IDENTITY, k=K + 1, vocab_size=VOCAB)
    writer = CacheWriter.open(tmp_path, other, k=K, vocab_size=VOCAB, overwrite=True)
    assert writer.done_ids == set()


def test_workers_fill_disjoint_shards_and_finalize_merges(tmp_path):
    examples = [make_example(i) for i in range(9)]
    for worker in range(2):
        writer = CacheWriter.open(tmp_path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=2,
                                  worker_index=worker, num_workers=2)
        for ex in examples[worker::2]:
            writer.add(ex)
        writer.record_skipped("empty_instruction", 1)
        writer.close()
        if worker == 0:
            with pytest.raises(CacheError, match="1 of 2 workers"):
                finalize_cache(tmp_path)
    manifest = finalize_cache(tmp_path)
    assert manifest.rows == 9 and manifest.skipped == {"empty_instruction": 2}
    world = CacheReader(tmp_path)
    by_rank = [[r.example_id for r in world.iter_examples(rank, 2)] for rank in range(2)]
    assert not set(by_rank[0]) & set(by_rank[1])
    assert sorted(by_rank[0] + by_rank[1]) == sorted(e.example_id for e in examples)
    verify_cache(tmp_path)


def test_verify_names_truncated_and_corrupt_shards(tmp_path):
    write_cache(tmp_path, [make_example(i) for i in range(6)])
    shard = sorted((tmp_path / "shards").glob("*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: sha256 does not match"):
        verify_cache(tmp_path)
    shard.write_bytes(bytes(data[:100]))
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: .* bytes, manifest says"):
        verify_cache(tmp_path)
    shard.unlink()
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: shard listed in the manifest is missing"):
        verify_cache(tmp_path)


def test_reader_names_unreadable_shard(tmp_path):
    write_cache(tmp_path, [make_example(i) for i in range(3)])
    shard = next((tmp_path / "shards").glob("*.parquet"))
    shard.write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(CacheError, match=shard.name):
        list(CacheReader(tmp_path))
