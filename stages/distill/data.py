"""Streams a teacher cache into training batches: per rank, per loader worker, resumable.

Order of operations in each loader worker: its shards (rank r of w reads the cache's shards
r, r+w, ...; worker v of W reads every W-th of those) -> records, one Parquet batch at a
time -> held-out and unusable records left out (counted) -> seeded shuffle buffer -> pools
sorted by length and cut under the token budget -> batches in seeded random order.

Resuming: a DataLoader hands out its workers' items round-robin, skipping exhausted
workers. `DataPosition` records, per worker, how many items were consumed and which worker
is due next. A restarted loader's real worker i plays the role of worker
(i + next_worker) % W and skips its consumed items, so the item sequence continues exactly
where it stopped.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cache_schema import CacheError, CacheReader

from .batching import Example, collate, fit_example, pack_by_budget


def is_held_out(example_id: str, eval_fraction: float) -> bool:
    """Stable across runs and machines: the example id's sha256 as a number in [0, 1)."""
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction


@dataclass
class BatchingOptions:
    max_batch_tokens: int = 512
    max_batch_examples: int = 8
    max_seq_len: int = 512
    shuffle_buffer: int = 256
    sort_pool: int = 32
    drop_length_truncated: bool = False
    eval_fraction: float = 0.05


@dataclass
class DataPosition:
    """Where one rank's data stream stands: enough to restart it exactly."""

    epoch: int = 0
    items: list[int] = field(default_factory=list)  # items consumed per (virtual) worker this epoch
    next_worker: int = 0
    batches: int = 0  # batches consumed this epoch
    counts: dict = field(default_factory=dict)  # examples used and skipped, all epochs

    def advance(self, item: dict, num_workers: int) -> None:
        if not self.items:
            self.items = [0] * num_workers
        self.items[item["worker"]] += 1
        self.next_worker = (item["worker"] + 1) % num_workers
        self.batches += item["batch"] is not None
        for key, value in item["counts"].items():
            self.counts[key] = self.counts.get(key, 0) + value

    def next_epoch(self) -> None:
        self.epoch += 1
        self.items = []
        self.next_worker = 0
        self.batches = 0

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "items": list(self.items), "next_worker": self.next_worker,
                "batches": self.batches, "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, data: dict) -> "DataPosition":
        return cls(epoch=data["epoch"], items=list(data["items"]), next_worker=data["next_worker"],
                   batches=data["batches"], counts=dict(data["counts"]))


class CacheBatches(IterableDataset):
    """One epoch of one rank's training batches; items are dicts (see module docstring).

    Each item: {"worker": v, "counts": dict of examples used/skipped since the worker's
    previous item, "batch": collated batch or None, "error": message or None}. A shard that
    cannot be read becomes an error item, so the message reaches the trainer intact.
    """

    def __init__(self, cache_dir, options: BatchingOptions, *, rank: int = 0, world: int = 1,
                 num_workers: int = 0, seed: int = 0, position: DataPosition | None = None):
        self.cache_dir = str(cache_dir)
        self.options = options
        self.rank, self.world = rank, world
        self.loader_workers = num_workers  # DataLoader processes; 0 = the main process
        self.num_workers = max(1, num_workers)  # roles that split the rank's shards
        self.seed = seed
        self.position = position or DataPosition()

    def __iter__(self):
        info = get_worker_info()
        real = info.id if info is not None else 0
        if info is not None and info.num_workers != self.num_workers:
            raise ValueError(f"dataset built for {self.num_workers} workers runs under {info.num_workers}")
        worker = (real + self.position.next_worker) % self.num_workers
        already = self.position.items[worker] if self.position.items else 0
        yield from _skip(self._items(worker), already)

    def _items(self, worker: int):
        rng = np.random.default_rng([self.seed, self.position.epoch, self.rank, worker])
        counts: Counter = Counter()
        try:
            reader = CacheReader(self.cache_dir)
            shards = reader.shards_for(self.rank, self.world)[worker :: self.num_workers]
            examples = self._usable(reader.iter_examples(shards=shards), counts)
            pool: list[Example] = []
            for example in _shuffled(examples, self.options.shuffle_buffer, rng):
                pool.append(example)
                if len(pool) == self.options.sort_pool:
                    yield from self._batches(pool, rng, worker, counts)
                    pool = []
            yield from self._batches(pool, rng, worker, counts)
        except CacheError as exc:
            yield {"worker": worker, "counts": dict(counts), "batch": None, "error": str(exc)}
            return
        if sum(counts.values()):
            yield {"worker": worker, "counts": dict(counts), "batch": None, "error": None}

    def _usable(self, records, counts: Counter):
        opts = self.options
        for record in records:
            if is_held_out(record.example_id, opts.eval_fraction):
                counts["held_out"] += 1
            elif opts.drop_length_truncated and record.finish_reason == "length":
                counts["dropped_length"] += 1
            else:
                example, note = fit_example(record, opts.max_seq_len)
                if note:
                    counts[note] += 1
                if example is not None:
                    yield example

    def _batches(self, pool: list[Example], rng, worker: int, counts: Counter):
        batches = pack_by_budget(pool, self.options.max_batch_tokens, self.options.max_batch_examples)
        for i in rng.permutation(len(batches)):
            counts["examples"] += len(batches[i])
            # a plain dict: the DataLoader's default_convert rebuilds mappings with update(),
            # which would add a Counter to itself
            item = {"worker": worker, "counts": dict(counts), "batch": collate(batches[i]), "error": None}
            counts.clear()
            yield item


def _shuffled(items, buffer_size: int, rng):
    """A shuffle buffer: memory bounded by buffer_size, order fixed by rng."""
    buffer = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        i = int(rng.integers(buffer_size))
        yield buffer[i]
        buffer[i] = item
    for i in rng.permutation(len(buffer)):
        yield buffer[i]


def _skip(items, count: int):
    for index, item in enumerate(items):
        if index >= count:
            yield item


def training_loader(dataset: CacheBatches, pin_memory: bool = False) -> DataLoader:
    """batch_size=None: the dataset yields whole batches. New workers each epoch. Its own
    generator: seeding workers must not consume the global torch RNG a resumed run restores."""
    workers = dataset.loader_workers
    # A worker is a fork of the trainer: it pins a copy-on-write image of the model and
    # optimizer, which every optimizer step then duplicates (a 0.5B run here went from 12.5
    # to ~25 GiB and swapped). Hence DistillConfig.num_workers defaults to 0.
    return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None, persistent_workers=False,
                      generator=torch.Generator().manual_seed(dataset.seed))


class BatchStream:
    """One rank's endless batches, epoch after epoch; `position` is always where it stands."""

    def __init__(self, cache_dir, options: BatchingOptions, *, rank: int, world: int, num_workers: int,
                 seed: int, position: DataPosition, pin_memory: bool = False):
        self.args = dict(cache_dir=cache_dir, options=options, rank=rank, world=world,
                         num_workers=num_workers, seed=seed)
        self.position = position
        self.pin_memory = pin_memory
        self._items = None

    def next(self) -> dict:
        while True:
            if self._items is None:
                snapshot = DataPosition.from_dict(self.position.to_dict())
                self._items = iter(training_loader(CacheBatches(**self.args, position=snapshot), self.pin_memory))
            try:
                item = next(self._items)
            except StopIteration:
                if self.position.batches == 0:
                    raise CacheError(f"rank {self.args['rank']} of {self.args['world']} found no training "
                                     f"example in {self.args['cache_dir']} (counts: {self.position.counts})") from None
                self.position.next_epoch()
                self._items = None
                continue
            self.position.advance(item, max(1, self.args["num_workers"]))
            if item["error"]:
                raise CacheError(item["error"])
            if item["batch"] is not None:
                return item["batch"]


def heldout_batches(cache_dir, options: BatchingOptions, *, rank: int = 0, world: int = 1,
                    max_examples: int = 64) -> tuple[list[dict], int]:
    """This rank's held-out batches (its shards' held-out examples, at most max_examples),
    kept in memory for every evaluation; returns (batches, examples)."""
    if options.eval_fraction <= 0 or max_examples <= 0:
        return [], 0
    reader = CacheReader(cache_dir)
    examples: list[Example] = []
    for record in reader.iter_examples(rank, world):
        if len(examples) >= max_examples:
            break
        if not is_held_out(record.example_id, options.eval_fraction):
            continue
        example, _ = fit_example(record, options.max_seq_len)
        if example is not None:
            examples.append(example)
    packed = pack_by_budget(examples, options.max_batch_tokens, options.max_batch_examples)
    return [collate(batch) for batch in packed], len(examples)


def batch_tokens(batch: dict) -> int:
    return int(batch["response_mask"].sum())


def move_batch(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
