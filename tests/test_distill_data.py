"""The distillation data pipeline: budgets, alignment, splits, shuffling, exact resume."""
from collections import Counter

import pytest
import torch

from cache_schema import CacheReader
from distill_cache import random_cache
from stages.distill.data import (
    BatchingOptions,
    CacheBatches,
    DataPosition,
    heldout_batches,
    is_held_out,
    training_loader,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return random_cache(tmp_path_factory.mktemp("cache"), examples=60, rows_per_shard=5, length_every=7)


def epoch_items(cache, options, **kw):
    dataset = CacheBatches(cache, options, **kw)
    return list(training_loader(dataset))


def batch_ids(items):
    return [i for item in items if item["batch"] is not None for i in item["batch"]["example_ids"]]


def test_batches_respect_token_budget_and_cover_each_training_example_once(cache):
    options = BatchingOptions(max_batch_tokens=40, max_batch_examples=3, max_seq_len=40, eval_fraction=0.1)
    items = epoch_items(cache, options)
    for item in items:
        if item["batch"] is not None:
            rows, width = item["batch"]["input_ids"].shape
            assert rows * width <= 40 and rows <= 3
    ids = batch_ids(items)
    expected = [r.example_id for r in CacheReader(cache) if not is_held_out(r.example_id, 0.1)]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    counts = sum((Counter(item["counts"]) for item in items), Counter())
    assert counts["examples"] == len(expected) and counts["held_out"] == 60 - len(expected)


def test_response_positions_are_aligned_with_the_targets(cache):
    options = BatchingOptions(max_batch_tokens=64, max_seq_len=64, eval_fraction=0.0)
    records = {r.example_id: r for r in CacheReader(cache)}
    for item in epoch_items(cache, options):
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
    options = BatchingOptions(max_batch_tokens=64, max_seq_len=14, eval_fraction=0.0, drop_length_truncated=True)
    items = epoch_items(cache, options)
    counts = sum((Counter(item["counts"]) for item in items), Counter())
    records = list(CacheReader(cache))
    cut = [r for r in records if r.finish_reason == "length"]
    assert counts["dropped_length"] == len(cut) > 0
    assert not set(batch_ids(items)) & {r.example_id for r in cut}
    assert counts["truncated"] > 0
    for item in items:
        if item["batch"] is not None:
            assert item["batch"]["input_ids"].shape[1] <= 14


def test_ranks_read_disjoint_shards_that_cover_the_cache(cache):
    options = BatchingOptions(eval_fraction=0.0)
    whole = batch_ids(epoch_items(cache, options))
    parts = [batch_ids(epoch_items(cache, options, rank=r, world=2)) for r in range(2)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(whole) and len(whole) == 60


def test_heldout_slice_is_stable_and_disjoint_from_training(cache):
    options = BatchingOptions(eval_fraction=0.2)
    train = set(batch_ids(epoch_items(cache, options)))
    batches, count = heldout_batches(cache, options, max_examples=100)
    held = {i for b in batches for i in b["example_ids"]}
    assert count == len(held) > 0 and not held & train and len(held | train) == 60
    assert held == {f"rand:{i}:0" for i in range(60) if is_held_out(f"rand:{i}:0", 0.2)}


def test_shuffle_is_fixed_by_seed_and_epoch(cache):
    options = BatchingOptions(eval_fraction=0.0, shuffle_buffer=16, sort_pool=8)
    first = batch_ids(epoch_items(cache, options, seed=3))
    assert first == batch_ids(epoch_items(cache, options, seed=3))
    assert first != batch_ids(epoch_items(cache, options, seed=4))
    assert first != batch_ids(epoch_items(cache, options, seed=3, position=DataPosition(epoch=1)))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restarted_loader_continues_exactly_where_it_stopped(cache, workers):
    options = BatchingOptions(max_batch_tokens=48, eval_fraction=0.1, shuffle_buffer=8, sort_pool=4)
    full = epoch_items(cache, options, num_workers=workers, seed=1)
    for stop in (1, 5, len(full) - 1):
        position = DataPosition()
        for item in full[:stop]:
            position.advance(item, max(1, workers))
        rest = epoch_items(cache, options, num_workers=workers, seed=1, position=position)
        assert [i["batch"] and i["batch"]["example_ids"] for i in rest] == \
               [i["batch"] and i["batch"]["example_ids"] for i in full[stop:]]
        total = Counter(position.counts)
        for item in rest:
            total.update(item["counts"])
        assert total["examples"] + total["held_out"] == 60


def test_an_unreadable_shard_becomes_an_error_naming_it(tmp_path):
    cache = random_cache(tmp_path / "c", examples=12, rows_per_shard=4)
    shard = sorted((cache / "shards").glob("*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    items = epoch_items(cache, BatchingOptions(eval_fraction=0.0))
    errors = [i["error"] for i in items if i["error"]]
    assert len(errors) == 1 and shard.name in errors[0]
