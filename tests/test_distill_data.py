"""The distillation data pipeline: budgets, alignment, splits, shuffling, exact resume."""
import itertools
from collections import Counter

import pytest
import torch

from cache_schema import CacheReader
from distill_cache import random_cache
from stages.distill.config import BatchingConfig
from stages.distill.data import (
    CacheStream,
    DataPosition,
    MixedBatches,
    heldout_batches,
    is_held_out,
    training_loader,
)
from stages.distill.mixing import open_mix


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return random_cache(tmp_path_factory.mktemp("cache"), examples=60, rows_per_shard=5, length_every=7)


def stream(cache, options, *, rank=0, world=1, seed=0, epoch=0, taken=0) -> CacheStream:
    reader = CacheReader(cache)
    return CacheStream(reader, 0, options, k=reader.k, shards=reader.shards_for(rank, world), seed=seed,
                       rank=rank, worker=0, epoch=epoch, taken=taken)


def one_epoch(cache_stream: CacheStream) -> tuple[list[str], Counter]:
    """The example ids of the stream's current epoch, in order, and what it counted."""
    ids, counts = [], Counter()
    for example, skipped in cache_stream.epoch_items():
        counts.update(skipped)
        if example is not None:
            ids.append(example.example_id)
    return ids, counts


def items(cache, options, count, *, weights=(), **kw):
    """The first `count` items of the batch stream of a cache (or a list of caches)."""
    dataset = MixedBatches(open_mix(cache if isinstance(cache, list) else [cache], weights), options, **kw)
    return list(itertools.islice(training_loader(dataset), count))


def batch_ids(found):
    return [i for item in found if item["batch"] is not None for i in item["batch"]["example_ids"]]


def test_an_epoch_holds_each_training_example_once_and_counts_the_rest(cache):
    options = BatchingConfig(max_batch_tokens=40, max_batch_examples=3, max_seq_len=40, eval_fraction=0.1)
    ids, counts = one_epoch(stream(cache, options))
    expected = [r.example_id for r in CacheReader(cache) if not is_held_out(r.example_id, 0.1)]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert counts["held_out"] == 60 - len(expected)


def test_batches_respect_the_token_budget(cache):
    options = BatchingConfig(max_batch_tokens=40, max_batch_examples=3, max_seq_len=40, eval_fraction=0.1)
    found = items(cache, options, 60)
    for item in found:
        rows, width = item["batch"]["input_ids"].shape
        assert rows * width <= 40 and rows <= 3
    used = sum(item["counts"][0].get("examples", 0) for item in found)
    assert used == len(batch_ids(found))


def test_response_positions_are_aligned_with_the_targets(cache):
    options = BatchingConfig(max_batch_tokens=64, max_seq_len=64, eval_fraction=0.0)
    records = {r.example_id: r for r in CacheReader(cache)}
    for item in items(cache, options, 30):
        batch = item["batch"]
        offset = 0
        for row, example_id in enumerate(batch["example_ids"]):
            record = records[example_id]
            n, p = record.num_tokens, len(record.prompt_ids)
            positions = batch["response_mask"][row].nonzero()[:, 0]
            assert positions.tolist() == list(range(p - 1, p + n - 1))  # logits predicting token j: P + j - 1
            inputs = batch["input_ids"][row]
            assert inputs[:p].tolist() == record.prompt_ids.tolist()
            assert inputs[p : p + n - 1].tolist() == record.response_ids[:-1].tolist()
            assert batch["target_ids"][offset : offset + n].tolist() == record.response_ids.tolist()
            assert torch.equal(batch["topk_ids"][offset : offset + n], torch.from_numpy(record.topk_ids))
            offset += n
        assert offset == batch["target_ids"].shape[0] == int(batch["response_mask"].sum())


def test_long_examples_are_cut_and_length_truncated_ones_dropped_when_asked(cache):
    options = BatchingConfig(max_batch_tokens=64, max_seq_len=14, eval_fraction=0.0, drop_length_truncated=True)
    ids, counts = one_epoch(stream(cache, options))
    cut = [r for r in CacheReader(cache) if r.finish_reason == "length"]
    assert counts["dropped_length"] == len(cut) > 0
    assert not set(ids) & {r.example_id for r in cut}
    assert counts["truncated"] > 0
    for item in items(cache, options, 20):
        assert item["batch"]["input_ids"].shape[1] <= 14


def test_ranks_read_disjoint_shards_that_cover_the_cache(cache):
    options = BatchingConfig(eval_fraction=0.0)
    whole, _ = one_epoch(stream(cache, options))
    parts = [one_epoch(stream(cache, options, rank=r, world=2))[0] for r in range(2)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(whole) and len(whole) == 60


def test_heldout_slice_is_stable_and_disjoint_from_training(cache):
    options = BatchingConfig(eval_fraction=0.2)
    train, _ = one_epoch(stream(cache, options))
    batches, count = heldout_batches(CacheReader(cache), options, max_examples=100)
    held = {i for b in batches for i in b["example_ids"]}
    assert count == len(held) > 0 and not held & set(train) and len(held | set(train)) == 60
    assert held == {f"rand:{i}:0" for i in range(60) if is_held_out(f"rand:{i}:0", 0.2)}


def test_shuffle_is_fixed_by_seed_and_each_epoch_is_reshuffled(cache):
    options = BatchingConfig(eval_fraction=0.0, shuffle_buffer=16, sort_pool=8)
    first, _ = one_epoch(stream(cache, options, seed=3))
    assert first == one_epoch(stream(cache, options, seed=3))[0]
    assert first != one_epoch(stream(cache, options, seed=4))[0]
    second, _ = one_epoch(stream(cache, options, seed=3, epoch=1))
    assert sorted(second) == sorted(first) and second != first


def test_a_stream_runs_epoch_after_epoch_and_resumes_mid_epoch(cache):
    options = BatchingConfig(eval_fraction=0.1, shuffle_buffer=8)
    epochs = [one_epoch(stream(cache, options, seed=2, epoch=e))[0] for e in range(2)]
    running = stream(cache, options, seed=2)
    taken = [running.take()[0].example_id for _ in range(len(epochs[0]) + 5)]
    assert taken == epochs[0] + epochs[1][:5] and running.position == [1, 5]
    later = stream(cache, options, seed=2, taken=10)
    assert [later.take()[0].example_id for _ in range(5)] == epochs[0][10:15]
    counts = Counter()
    for _ in range(len(epochs[0])):  # a whole epoch from the start counts every held-out record once
        counts.update(running.take()[1])
    assert counts["held_out"] == sum(is_held_out(f"rand:{i}:0", 0.1) for i in range(60))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mixed", [False, True], ids=["one-cache", "two-caches"])
def test_a_restarted_loader_continues_exactly_where_it_stopped(cache, workers, mixed, tmp_path):
    options = BatchingConfig(max_batch_tokens=48, max_seq_len=48, eval_fraction=0.1, shuffle_buffer=8, sort_pool=4)
    source, weights = cache, ()
    if mixed:
        source, weights = [cache, random_cache(tmp_path / "small", examples=20, k=6, seed=1, prefix="s")], (1, 2)
    full = items(source, options, 70, weights=weights, num_workers=workers, seed=1)  # crosses epochs
    assert DataPosition().epochs(1) == [0]
    for stop in (1, 5, 33):
        position = DataPosition()
        for item in full[:stop]:
            position.advance(item, max(1, workers))
        restarted = DataPosition.from_dict(position.to_dict())
        rest = items(source, options, len(full) - stop, weights=weights, num_workers=workers, seed=1,
                     position=restarted)
        assert [i["batch"]["example_ids"] for i in rest] == [i["batch"]["example_ids"] for i in full[stop:]]
        assert [i["counts"] for i in rest] == [i["counts"] for i in full[stop:]]  # nothing counted twice


def test_an_unreadable_shard_becomes_an_error_naming_it(tmp_path):
    cache = random_cache(tmp_path / "c", examples=12, rows_per_shard=4)
    shard = sorted((cache / "shards").glob("*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    found = items(cache, BatchingConfig(eval_fraction=0.0, sort_pool=2), 20)
    errors = [i["error"] for i in found if i["error"]]
    assert len(errors) == 1 and shard.name in errors[0]


def test_a_cache_with_nothing_to_train_on_is_named(tmp_path):
    cache = random_cache(tmp_path / "c", examples=3, rows_per_shard=4)
    found = items(cache, BatchingConfig(eval_fraction=0.999999), 3)
    assert len(found) == 1 and "found no training example" in found[0]["error"] and str(cache) in found[0]["error"]
