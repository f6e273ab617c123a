"""Streams a mix of teacher caches into training batches: per rank, per loader worker, resumable.

Each reader (rank r of w, loader worker v of W) reads, of every cache, the shards r, r+w, ...
and of those every W-th from v. Per cache: records, one Parquet batch at a time -> held-out
and unusable records left out (counted) -> a seeded shuffle buffer -> examples; a cache
that runs out starts its next epoch, reshuffled, on its own (`CacheStream`). The reader
then fills pools of `sort_pool` examples, drawing each example's cache from a seeded RNG
with the mix's probabilities; a pool is sorted by length, cut under the token budget and
its batches handed out in seeded random order (`MixedBatches`).

Resuming: the RNGs of pool p (cache draws, batch order) are seeded by (seed, rank, worker,
p), so a reader's state is small: the pool it is in, how many of the pool's batches were
handed out, and each cache stream's (epoch, examples taken) at the pool's start. Every
item carries its reader's state after it; `DataPosition` keeps, per reader, the state of
the last item the trainer consumed, and which reader is due next (a DataLoader hands out
its workers' items round-robin). A restarted reader rebuilds the pool from that state
(replaying at most one epoch of each cache) and continues exactly where it stopped.
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
from .config import BatchingConfig
from .mixing import CacheMix, pad_topk


def is_held_out(example_id: str, eval_fraction: float) -> bool:
    """Stable across runs and machines: the example id's sha256 as a number in [0, 1)."""
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction


@dataclass
class DataPosition:
    """Where one rank's data stream stands: enough to restart it exactly."""

    readers: list = field(default_factory=list)  # per loader worker: its state after its last consumed item
    next_worker: int = 0
    counts: list = field(default_factory=list)  # per cache: examples used and skipped, all epochs

    def advance(self, item: dict, num_workers: int) -> None:
        if not self.readers:
            self.readers = [None] * num_workers
        self.readers[item["worker"]] = item["state"]
        self.next_worker = (item["worker"] + 1) % num_workers
        for i, delta in enumerate(item["counts"]):
            while len(self.counts) <= i:
                self.counts.append({})
            for key, value in delta.items():
                self.counts[i][key] = self.counts[i].get(key, 0) + value

    def epochs(self, caches: int) -> list[int]:
        """Per cache, the epoch its slowest reader has reached (0 until every reader has started)."""
        started = [s for s in self.readers if s is not None]
        if len(started) < len(self.readers) or not started:
            return [0] * caches
        return [min(s["epochs"][i] for s in started) for i in range(caches)]

    def examples(self) -> int:
        return sum(c.get("examples", 0) for c in self.counts)

    def to_dict(self) -> dict:
        return {"readers": [None if s is None else _copy_state(s) for s in self.readers],
                "next_worker": self.next_worker, "counts": [dict(c) for c in self.counts]}

    @classmethod
    def from_dict(cls, data: dict) -> "DataPosition":
        return cls(readers=[None if s is None else _copy_state(s) for s in data["readers"]],
                   next_worker=data["next_worker"], counts=[dict(c) for c in data["counts"]])


def sum_counts(counts) -> dict:
    """Counts dicts added up (e.g. one cache's over ranks)."""
    total: dict = {}
    for c in counts:
        for key, value in c.items():
            total[key] = total.get(key, 0) + value
    return total


def _copy_state(state: dict) -> dict:
    return {"pool": state["pool"], "done": state["done"], "streams": [list(s) for s in state["streams"]],
            "epochs": list(state["epochs"])}


class CacheStream:
    """One cache's usable examples for one reader, epoch after epoch, each epoch reshuffled.

    Its position is (epoch, taken); a stream opened at a position replays that epoch's first
    `taken` examples without counting them again."""

    def __init__(self, reader: CacheReader, index: int, options: BatchingConfig, *, k: int, shards, seed: int,
                 rank: int, worker: int, epoch: int = 0, taken: int = 0):
        self.reader, self.index, self.options, self.k, self.shards = reader, index, options, k, shards
        self.seed, self.rank, self.worker = seed, rank, worker
        self.epoch, self.taken = epoch, taken
        self._items = None

    @property
    def position(self) -> list[int]:
        return [self.epoch, self.taken]

    def take(self) -> tuple[Example, Counter]:
        """The next example and the records skipped on the way to it (held out, cut, ...)."""
        counts: Counter = Counter()
        while True:
            if self._items is None:
                self._items = self.epoch_items()
                for _ in range(self.taken):
                    next(self._items)
            example, skipped = next(self._items)
            counts.update(skipped)
            if example is not None:
                self.taken += 1
                example.cache = self.index
                return pad_topk(example, self.k), counts
            if self.taken == 0:
                raise CacheError(f"{self.reader.cache_dir}: rank {self.rank}, loader worker {self.worker} found no "
                                 f"training example in its {len(self.shards)} shard(s) (counts: {dict(counts)})")
            self.epoch, self.taken, self._items = self.epoch + 1, 0, None

    def epoch_items(self):
        """The current epoch: (example, records skipped just before it in file order) in this
        epoch's shuffled order, then (None, records skipped after the last usable one)."""
        opts = self.options
        rng = np.random.default_rng([self.seed, self.index, self.epoch, self.rank, self.worker])
        skipped: Counter = Counter()

        def usable():
            for record in self.reader.iter_examples(shards=self.shards):
                if is_held_out(record.example_id, opts.eval_fraction):
                    skipped["held_out"] += 1
                    continue
                if opts.drop_length_truncated and record.finish_reason == "length":
                    skipped["dropped_length"] += 1
                    continue
                example, note = fit_example(record, opts.max_seq_len)
                if note:
                    skipped[note] += 1
                if example is not None:
                    before = dict(skipped)
                    skipped.clear()
                    yield example, before

        yield from _shuffled(usable(), opts.shuffle_buffer, rng)
        yield None, dict(skipped)


class MixedBatches(IterableDataset):
    """One rank's endless training batches from the mix; items are dicts (see module docstring).

    Each item: {"worker": v, "state": the reader's state after this item, "counts": per cache,
    the batch's examples and the records skipped while its pool was drawn (those on the
    pool's first batch only), "batch": collated batch or None, "error": message or None}. A shard that cannot be read becomes an error
    item, so the message reaches the trainer intact.
    """

    def __init__(self, mix: CacheMix, options: BatchingConfig, *, rank: int = 0, world: int = 1,
                 num_workers: int = 0, seed: int = 0, position: DataPosition | None = None):
        # paths, not readers: each loader worker opens its own
        self.paths = [c.path for c in mix.caches]
        self.probabilities = mix.probabilities
        self.k = mix.k
        self.options = options
        self.rank, self.world = rank, world
        self.loader_workers = num_workers  # DataLoader processes; 0 = the main process
        self.num_workers = max(1, num_workers)  # readers that split the rank's shards
        self.seed = seed
        self.position = position or DataPosition()

    def __iter__(self):
        info = get_worker_info()
        real = info.id if info is not None else 0
        if info is not None and info.num_workers != self.num_workers:
            raise ValueError(f"dataset built for {self.num_workers} workers runs under {info.num_workers}")
        worker = (real + self.position.next_worker) % self.num_workers
        state = self.position.readers[worker] if self.position.readers else None
        yield from self._items(worker, state)

    def _items(self, worker: int, state: dict | None):
        try:
            streams = self._streams(worker, state)
            pool, done = (state["pool"], state["done"]) if state else (0, 0)
            while True:
                start = [s.position for s in streams]
                examples, counts = self._draw(streams, worker, pool)
                reached = [s.epoch for s in streams]  # for the log: a pool may span epochs
                batches = pack_by_budget(examples, self.options.max_batch_tokens, self.options.max_batch_examples)
                order = np.random.default_rng([self.seed, self.rank, worker, pool, 1]).permutation(len(batches))
                for j in range(done, len(batches)):
                    batch = batches[order[j]]
                    used = counts if j == 0 else [{} for _ in streams]
                    for example in batch:
                        used[example.cache]["examples"] = used[example.cache].get("examples", 0) + 1
                    state = {"pool": pool, "done": j + 1, "streams": start, "epochs": reached}
                    yield {"worker": worker, "state": state,
                           "counts": used, "batch": collate(batch), "error": None}
                pool, done = pool + 1, 0
        except CacheError as exc:
            yield {"worker": worker, "state": state, "counts": [], "batch": None, "error": str(exc)}

    def _streams(self, worker: int, state: dict | None) -> list[CacheStream]:
        streams = []
        for i, path in enumerate(self.paths):
            reader = CacheReader(path)
            shards = reader.shards_for(self.rank, self.world)[worker :: self.num_workers]
            epoch, taken = state["streams"][i] if state else (0, 0)
            streams.append(CacheStream(reader, i, self.options, k=self.k, shards=shards, seed=self.seed,
                                       rank=self.rank, worker=worker, epoch=epoch, taken=taken))
        return streams

    def _draw(self, streams: list[CacheStream], worker: int, pool: int) -> tuple[list[Example], list[dict]]:
        """Pool `pool`'s examples: each one's cache drawn with the mix's probabilities."""
        rng = np.random.default_rng([self.seed, self.rank, worker, pool, 0])
        choices = rng.choice(len(streams), size=self.options.sort_pool, p=self.probabilities)
        counts = [Counter() for _ in streams]
        examples = []
        for c in choices:
            example, skipped = streams[c].take()
            examples.append(example)
            counts[c].update(skipped)
        # plain dicts: the DataLoader's default_convert rebuilds mappings with update(),
        # which would add a Counter to itself
        return examples, [dict(c) for c in counts]


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


def training_loader(dataset: MixedBatches, pin_memory: bool = False) -> DataLoader:
    """batch_size=None: the dataset yields whole batches. Its own generator: seeding workers
    must not consume the global torch RNG a resumed run restores."""
    workers = dataset.loader_workers
    # A worker is a fork of the trainer: it pins a copy-on-write image of the model and
    # optimizer, which every optimizer step then duplicates (a 0.5B run here went from 12.5
    # to ~25 GiB and swapped). Hence DistillConfig.num_workers defaults to 0.
    return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None, persistent_workers=False,
                      generator=torch.Generator().manual_seed(dataset.seed))


class BatchStream:
    """One rank's endless batches; `position` is always where it stands."""

    def __init__(self, mix: CacheMix, options: BatchingConfig, *, rank: int, world: int, num_workers: int,
                 seed: int, position: DataPosition, pin_memory: bool = False):
        self.dataset_args = dict(mix=mix, options=options, rank=rank, world=world, num_workers=num_workers,
                                 seed=seed)
        self.num_workers = max(1, num_workers)
        self.position = position
        self.pin_memory = pin_memory
        self._items = None

    def next(self) -> dict:
        if self._items is None:
            snapshot = DataPosition.from_dict(self.position.to_dict())
            dataset = MixedBatches(**self.dataset_args, position=snapshot)
            self._items = iter(training_loader(dataset, self.pin_memory))
        item = next(self._items)
        self.position.advance(item, self.num_workers)
        if item["error"]:
            raise CacheError(item["error"])
        return item["batch"]

    def close(self) -> None:
        """Stop the loader's worker processes."""
        self._items = None


def heldout_batches(reader: CacheReader, options: BatchingConfig, *, k: int | None = None, rank: int = 0,
                    world: int = 1, max_examples: int = 64, every_example: bool = False) -> tuple[list[dict], int]:
    """This rank's held-out batches of one cache (its shards' held-out examples, at most
    max_examples, padded to k entries), kept in memory for every evaluation; returns
    (batches, examples). `every_example`: a cache never trained on (a probe), read from its start."""
    if (options.eval_fraction <= 0 and not every_example) or max_examples <= 0:
        return [], 0
    examples: list[Example] = []
    for record in reader.iter_examples(rank, world):
        if len(examples) >= max_examples:
            break
        if not every_example and not is_held_out(record.example_id, options.eval_fraction):
            continue
        example, _ = fit_example(record, options.max_seq_len)
        if example is not None:
            examples.append(pad_topk(example, k or reader.k))
    packed = pack_by_budget(examples, options.max_batch_tokens, options.max_batch_examples)
    return [collate(batch) for batch in packed], len(examples)


def move_batch(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
