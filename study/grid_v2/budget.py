"""Every training run's budget, computed once from the off-policy cache and saved as budget.json.

A step is `grad_accum` micro-batches of at most `max_batch_tokens` tokens; how many sequences
a micro-batch holds depends on the answers' lengths, so the grid packs the cache's training
slice exactly as `akd distill` does (held-out ids left out, random pools of `sort_pool`
sorted and cut under the token budget) and sizes the steps from that: enough micro-batches
per step for `batch_sequences` sequences on average, enough steps for `epochs` passes. Every
run of one student size then gets the same steps, warmup, schedule and seed (the arms'
caches differ in length, not in the number of optimizer steps).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from common.files import atomic_write_json
from common.settings import default_of, option_fields
from stages.distill.config import DistillConfig
from study.grid_v2.config import ExperimentConfig
from study.engine.settings import ExperimentError

BUDGET_FILE = "budget.json"
# the packing settings the grid leaves to `akd distill` (its defaults, or --distill-options)
PACKING = ("max_seq_len", "max_batch_examples", "sort_pool", "eval_fraction")


@dataclass(frozen=True)
class RunBudget:
    """One student size's schedule: what every one of its runs is given."""

    steps: int
    warmup_steps: int
    eval_every: int
    checkpoint_every: int
    keep_checkpoints: int

    def args(self, grad_accum: int, max_batch_tokens: int) -> list[str]:
        return ["--max-steps", str(self.steps), "--warmup-steps", str(self.warmup_steps),
                "--grad-accum", str(grad_accum), "--max-batch-tokens", str(max_batch_tokens),
                "--eval-every", str(self.eval_every), "--checkpoint-every", str(self.checkpoint_every),
                "--keep-checkpoints", str(self.keep_checkpoints)]


@dataclass(frozen=True)
class Budget:
    train_examples: int  # the off-policy cache's training slice (held-out ids left out)
    micro_batches: int  # micro-batches in one pass over it
    grad_accum: int
    full: RunBudget  # every full-size arm
    sweep: RunBudget  # each lr of the sweep
    small: RunBudget  # every arm of the smaller student; its midpoint is a checkpoint

    @property
    def sequences_per_step(self) -> float:
        return self.grad_accum * self.train_examples / self.micro_batches

    @property
    def small_midpoint(self) -> int:
        return self.small.checkpoint_every

    def to_dict(self) -> dict:
        return {**asdict(self), "sequences_per_step": round(self.sequences_per_step, 2)}


def plan_budget(config: ExperimentConfig, train_examples: int, micro_batches: int) -> Budget:
    """The schedule of every run from the size of one pass over the training slice."""
    if train_examples < 1 or micro_batches < 1:
        raise ExperimentError(f"the off-policy cache has {train_examples} training examples in "
                              f"{micro_batches} micro-batches: nothing to train on")
    grad_accum = max(1, math.ceil(config.batch_sequences * micro_batches / train_examples))
    steps = max(1, math.ceil(config.epochs * micro_batches / grad_accum))
    sweep_steps = max(1, round(config.sweep_fraction * steps))
    small_steps = max(2, math.ceil(config.small_epochs * micro_batches / grad_accum))
    small_steps += small_steps % 2  # an even count: the midpoint checkpoint is exactly half-way
    full = _run_budget(config, steps, checkpoint_every=max(1, math.ceil(steps / 2)), keep=1)
    # the smaller student keeps its midpoint checkpoint (and the last) for the midpoint eval
    small = _run_budget(config, small_steps, checkpoint_every=small_steps // 2, keep=2)
    # a sweep run is judged on its last held-out check: none in between
    sweep = _run_budget(config, sweep_steps, checkpoint_every=sweep_steps, keep=1, evals=1)
    return Budget(train_examples, micro_batches, grad_accum, full, sweep, small)


def _run_budget(config: ExperimentConfig, steps: int, *, checkpoint_every: int, keep: int,
                evals: int | None = None) -> RunBudget:
    warmup = min(steps - 1, math.ceil(config.warmup_fraction * steps)) if config.warmup_fraction else 0
    return RunBudget(steps, max(0, warmup), max(1, math.ceil(steps / (evals or config.heldout_evals))),
                     checkpoint_every, keep)


def measure_cache(cache_dir: Path, config: ExperimentConfig) -> tuple[int, int]:
    """(training examples, micro-batches of one pass) of a cache, packed as `akd distill` packs
    it under the grid's token budget and packing settings (seeded, so the same every time)."""
    from stages.distill.planning import one_pass

    return one_pass(cache_dir, **packing_settings(config), max_batch_tokens=config.max_batch_tokens,
                    seed=config.seed)


def packing_settings(config: ExperimentConfig) -> dict:
    """`akd distill`'s defaults for PACKING, overridden by the grid's --distill-options."""
    defaults = {field.name: default_of(field) for _, field in option_fields(DistillConfig)}
    extra = config.distill_options.split()
    settings = {}
    for name in PACKING:
        flag = "--" + name.replace("_", "-")
        given = [extra[i + 1] for i, arg in enumerate(extra[:-1]) if arg == flag]
        settings[name] = type(defaults[name])(given[-1]) if given else defaults[name]
    return settings


def write_budget(config: ExperimentConfig, cache_dir: Path, path: Path) -> Budget:
    budget = plan_budget(config, *measure_cache(cache_dir, config))
    atomic_write_json(path, budget.to_dict())
    return budget


def read_budget(path: Path) -> Budget:
    if not path.exists():
        raise ExperimentError(f"{path} is missing: the budget has not been computed yet")
    data = json.loads(path.read_text())
    runs = {key: RunBudget(**data[key]) for key in ("full", "sweep", "small")}
    return Budget(data["train_examples"], data["micro_batches"], data["grad_accum"], **runs)
