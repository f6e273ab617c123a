"""How many micro-batches one pass over a cache makes, packed exactly as training packs it:
for planners that size runs before training one (the study's budget). Public, like
run_folder.py, so that a planner never reaches into batching's internals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cache_schema import CacheReader

from .batching import fit_example, pack_by_budget
from .data import is_held_out


def one_pass(cache_dir: Path | str, *, max_seq_len: int, eval_fraction: float, sort_pool: int,
             max_batch_tokens: int, max_batch_examples: int, seed: int) -> tuple[int, int]:
    """(training examples, micro-batches of one pass) of a cache: held-out ids left out, examples
    cut to `max_seq_len`, seeded random pools of `sort_pool` sorted and cut under the budget."""
    examples = []
    for record in CacheReader(cache_dir).iter_examples():
        if is_held_out(record.example_id, eval_fraction):
            continue
        example, _ = fit_example(record, max_seq_len)
        if example is not None:
            examples.append(example)
    order = np.random.default_rng(seed).permutation(len(examples))
    micro_batches = 0
    for start in range(0, len(order), sort_pool):
        chunk = [examples[i] for i in order[start:start + sort_pool]]
        micro_batches += len(pack_by_budget(chunk, max_batch_tokens, max_batch_examples))
    return len(examples), micro_batches
