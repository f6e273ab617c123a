"""Stage two: train a student on a teacher cache. `_train` reads like a recipe: set up, then
each step fetch micro-batches, forward and backward, clip, update, and do what the step is due.

    from stages.distill import DistillConfig, train
    summary = train(DistillConfig(caches=("caches/x",), student="models/student", run_dir="runs/x"))

Single process, or `torchrun --nproc_per_node N` (DDP; FSDP2 with fsdp=True). Global batch =
per-rank micro-batch x world x grad_accum; the loss of a step is the mean over all its
response tokens, whatever rank or micro-batch they fell in. Kill it at any moment and rerun
the same command: it resumes from the last checkpoint and, with deterministic=True and
fixed threads on a CPU, ends with the same weights as an uninterrupted run.

Syncs: a step that logs, evaluates and saves nothing reads nothing back from the device and
makes one all-reduce, of its token count (the loss weights need it before backward); its
statistics, gradient norm and a note of any non-finite value stay on the device. A step that
logs (or evaluates, or saves) sums them over ranks in one more all-reduce and reads them
back in one copy; a non-finite loss or gradient norm seen since stops the run there, before
anything is logged or saved.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import resource
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from cache_schema import tokenizer_fingerprint
from common.files import names_full_disk
from common.machine import cpu_dtype

from . import distributed
from .checkpoint import (latest_checkpoint, load_trainer_state, rng_state, save_checkpoint, save_final,
                         set_rng_state)
from .config import DistillConfig
from .data import BatchStream, DataPosition, heldout_batches, move_batch, sum_counts
from .errors import DistillConfigError, NonFiniteLossError
from .heldout import evaluate
from .metrics import TRAIN_STATS, MetricsLog, NonFiniteWatch, StepStats, plot_metrics, pool_eval
from .mixing import CacheMix, MixedCache, open_mix, open_probes
from .model_card import write_student_card
from .run_folder import CHECKPOINT_MODEL_DIR, FINAL_DIR, SUMMARY_FILE, read_run_record, write_heldout_sequences
from .rundir import prepare_run_dir, run_record
from .student_model import DistillStudent, check_tokenizer, load_model, load_tokenizer

RESUME_HINT = "rerun the same command: it resumes from the last checkpoint"


def train(config: DistillConfig) -> dict:
    """Train (or resume) the run in config.run_dir; returns a summary of the run."""
    config.validate()
    env = distributed.setup(config.device)
    try:
        with _determinism(config), names_full_disk(config.run_dir, RESUME_HINT):
            return _train(config, env)
    finally:
        distributed.teardown(env)


def _train(config: DistillConfig, env) -> dict:
    run = _start(config, env)
    bar = tqdm(total=config.max_steps, initial=run.step, desc="distill", unit="step", dynamic_ncols=True,
               disable=not (env.is_main and config.progress))
    if run.have_eval and run.step == 0:
        _evaluate(run)  # the starting point of the eval curve
    while run.step < config.max_steps:
        _train_step(run, bar)
    bar.close()
    return _finish(run)


def _train_step(run: _Run, bar) -> None:
    """One optimizer step, then what it is due: log, evaluate, checkpoint."""
    config = run.config
    step_start = time.perf_counter()
    batches = [run.stream.next() for _ in range(config.grad_accum)]
    data_wait = time.perf_counter() - step_start
    stats, tokens = _forward_backward(run, batches)
    grad_norm = _clip_gradients(run.module, config.grad_clip)
    lr = _optimizer_step(run)
    run.step += 1
    run.watch.note(run.step, stats.loss_sum, grad_norm)
    due = _Due.at(run)
    report = _read_back(run, stats, tokens, grad_norm) if due.anything else None
    step_time = time.perf_counter() - step_start
    run.wait_total, run.step_total = run.wait_total + data_wait, run.step_total + step_time
    bar.update(1)
    if report is None:
        return
    _stop_if_nonfinite(run, report)
    if due.log:
        _log_train(run, report, lr, step_time, data_wait)
        bar.set_postfix(loss=f"{report.stats['loss']:.4f}", lr=f"{lr:.2e}")
    if due.eval:
        _evaluate(run)
        if run.env.is_main and config.plots:
            plot_metrics(run.log.records, run.run_dir)
    if due.checkpoint:
        _save_checkpoint(run)


# ---- setup ----
def matmul_precision(config: DistillConfig, device: torch.device) -> str:
    """bf16 or float32, as config.precision asks; `auto` takes bf16 only where it runs in
    hardware: a GPU that supports it, or a CPU with AVX-512 BF16 or AMX."""
    if config.precision != "auto":
        return config.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "float32"
    return "bf16" if cpu_dtype("auto") == "auto" else "float32"


@dataclass
class _Run:
    """What the loop works on; built once by _start."""

    config: DistillConfig
    env: distributed.DistEnv
    mix: CacheMix
    tokenizer: object
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    autocast: torch.autocast
    stream: BatchStream
    position: DataPosition  # the stream advances it; checkpoints save it
    eval_batches: list[list]  # per cache of the mix, then per probe
    have_eval: bool  # some rank holds held-out batches
    log: MetricsLog
    step: int
    started: float  # perf_counter at the start of this process's run
    elapsed_before: float  # seconds trained before this process resumed
    watch: NonFiniteWatch = field(default_factory=NonFiniteWatch)
    wait_total: float = 0.0
    step_total: float = 0.0
    precision: str = "float32"  # what config.precision came to here (matmul_precision)
    probes: tuple[MixedCache, ...] = ()  # caches only evaluated (--probe-cache)

    @property
    def run_dir(self):
        return self.config.run_path


def _start(config: DistillConfig, env) -> _Run:
    started = time.perf_counter()
    precision = matmul_precision(config, env.device)
    mix, tokenizer, vocab, resume_from = _check_caches_and_student(config, env, precision)
    module = _build_student(config, env, vocab, resume_from)
    optimizer = _make_optimizer(module, config, env)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))
    step, position, records, elapsed_before = _resume(resume_from, env, module, optimizer, scheduler)
    log = MetricsLog(config.run_path, records, enabled=env.is_main)
    probes = open_probes(config.probe_caches, mix)
    stream, eval_batches, have_eval = _open_data(config, env, mix, position, probes)
    autocast = torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    return _Run(config, env, mix, tokenizer, module, optimizer, scheduler, autocast, stream, position,
                eval_batches, have_eval, log, step, started, elapsed_before, precision=precision, probes=probes)


def _check_caches_and_student(config: DistillConfig, env, precision: str):
    """The caches (one tokenizer among them) and the student's tokenizer must agree before
    anything is trained; then the run directory is made (or checked, to resume):
    (mix, tokenizer, vocab, checkpoint or None)."""
    mix = open_mix(config.caches, config.cache_weights)
    mix.check_shards(env.world, config.num_workers, env.rank)
    tokenizer = load_tokenizer(config.student)
    vocab = check_tokenizer(tokenizer, mix.manifest, config.student)
    record = run_record(config, mix, tokenizer_fingerprint(tokenizer), vocab, env.world,
                        precision)
    return mix, tokenizer, vocab, prepare_run_dir(config, record, env)


def _build_student(config: DistillConfig, env, vocab: int, resume_from):
    """The student (from the checkpoint when resuming) with its loss, on the device, wrapped for DDP/FSDP2."""
    model = load_model(str(resume_from / CHECKPOINT_MODEL_DIR) if resume_from else config.student)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = DistillStudent(model, config.loss, vocab).to(env.device)
    module.train()
    return distributed.wrap(module, env, config.fsdp)


def _resume(resume_from, env, module, optimizer, scheduler) -> tuple[int, DataPosition, list, float]:
    """Restore optimizer, schedule and RNG; (step, data position, metrics so far, seconds trained so far)."""
    if not resume_from:
        return 0, DataPosition(), [], 0.0
    state = load_trainer_state(resume_from)
    if state["world"] != env.world:
        raise DistillConfigError(f"{resume_from} was written by {state['world']} processes; resume with "
                                 f"the same number (this run has {env.world})")
    distributed.load_optimizer_state(module, optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"][env.rank])
    return state["step"], DataPosition.from_dict(state["data"][env.rank]), state["metrics"], state["elapsed_s"]


def _open_data(config: DistillConfig, env, mix: CacheMix, position: DataPosition,
               probes: tuple[MixedCache, ...] = ()) -> tuple[BatchStream, list, bool]:
    """This rank's training stream (from position), each cache's held-out batches, then each
    probe's; whether any rank has some."""
    stream = BatchStream(mix, config.batching, rank=env.rank, world=env.world, num_workers=config.num_workers,
                         seed=config.seed, position=position, pin_memory=env.device.type == "cuda")
    per_rank = math.ceil(config.eval_max_examples / env.world)
    # one sequence a batch where each sequence's figures are written
    heldout = dataclasses.replace(config.batching, max_batch_examples=1) if config.heldout_per_sequence \
        else config.batching
    eval_batches = [heldout_batches(cache.reader, heldout, k=mix.k, rank=env.rank, world=env.world,
                                    max_examples=per_rank)[0] for cache in mix.caches]
    eval_batches += [heldout_batches(probe.reader, heldout, k=probe.reader.k, rank=env.rank, world=env.world,
                                     max_examples=per_rank, every_example=True)[0] for probe in probes]
    have_eval = distributed.sum_across(env, [sum(map(len, eval_batches))])[0] > 0
    return stream, eval_batches, have_eval


def _make_optimizer(module, config: DistillConfig, env) -> torch.optim.Optimizer:
    """AdamW, fused on CPU and CUDA (the unfused one alone costs ~3 s a step on the 0.5B);
    no weight decay on biases and norms."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2),
                             fused=env.device.type in ("cpu", "cuda"))


def _lr_factor(config: DistillConfig):
    """Linear warmup, then cosine from lr down to lr * min_lr_ratio at max_steps."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        span = max(1, config.max_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


# ---- one step ----
def _forward_backward(run: _Run, batches: list[dict]) -> tuple[StepStats, torch.Tensor]:
    """Accumulate the step's gradients over its micro-batches: (statistics, global token count),
    both left on the device. Each micro-batch's loss (a mean over its response tokens) is
    weighted by its tokens x world / the global batch's tokens, so the gradient DDP averages
    over ranks is that of the mean over every response token of the global batch."""
    env = run.env
    batches = [move_batch({k: v for k, v in b.items() if k != "example_ids"}, env.device) for b in batches]
    tokens = torch.stack([batch["response_mask"].sum() for batch in batches])
    global_tokens = distributed.all_reduce_sum(env, tokens.sum().reshape(1))
    weights = tokens.to(torch.float64) * env.world / global_tokens.to(torch.float64)
    stats = StepStats()
    with step_casts(run.module, env.device.type):
        for i, batch in enumerate(batches):
            with distributed.gradient_sync(run.module, i == len(batches) - 1), run.autocast:
                loss, micro_stats = run.module(**batch, loss_weight=weights[i])
            loss.backward()
            stats.add(micro_stats)
    return stats, global_tokens


def step_casts(module, device_type: str):
    """The context of one optimizer step's micro-batches: an autocast nesting level (itself
    disabled) around them. Autocast keeps its low-precision copy of each weight until the
    outermost of its regions ends, so the step's later micro-batches reuse the first one's casts
    instead of casting every weight again; the gradients are bit-identical (the weights change
    only in the optimizer step). Not under FSDP, where it would keep every layer's gathered
    weights alive between micro-batches."""
    if distributed.is_fsdp(module):
        return nullcontext()
    return torch.autocast(device_type, enabled=False)


def _clip_gradients(module, max_norm: float) -> torch.Tensor:
    """The gradient norm before clipping, on the device (max_norm 0: measure, do not clip)."""
    params = [p for p in module.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
        norm = norm.full_tensor()
    return norm.detach()


def _optimizer_step(run: _Run) -> float:
    """Update the weights and advance the schedule; returns the learning rate the update used."""
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return lr


@dataclass(frozen=True)
class _Due:
    """What a step does besides training; each needs its statistics read back (and checked) first."""

    log: bool
    eval: bool
    checkpoint: bool

    @classmethod
    def at(cls, run: _Run) -> "_Due":
        step, config = run.step, run.config
        last = step == config.max_steps
        return cls(log=step % config.log_every == 0 or last,
                   eval=run.have_eval and (step % config.eval_every == 0 or last),
                   checkpoint=step % config.checkpoint_every == 0 or last)

    @property
    def anything(self) -> bool:
        return self.log or self.eval or self.checkpoint


@dataclass
class _Report:
    """A step's statistics over all ranks, read back to the host."""

    stats: dict  # TRAIN_STATS -> mean over the global batch's response tokens
    tokens: int
    grad_norm: float
    examples_seen: int
    nonfinite_ranks: list[float]  # per watched value: ranks that have seen it non-finite


def _read_back(run: _Run, stats: StepStats, global_tokens: torch.Tensor, grad_norm: torch.Tensor) -> _Report:
    """The step's statistics summed over ranks in one all-reduce, then read back in one copy."""
    device = global_tokens.device
    examples = torch.tensor([run.position.examples()], dtype=torch.float64)
    per_rank = torch.cat([stats.sums.to(device), run.watch.flags(device), examples.to(device)])
    summed = distributed.all_reduce_sum(run.env, per_rank)
    global_values = torch.cat([global_tokens.to(torch.float64), grad_norm.to(device, torch.float64).reshape(1)])
    values = torch.cat([summed, global_values]).tolist()  # the step's one host sync
    n, flags = len(TRAIN_STATS), len(NonFiniteWatch.WHAT)
    examples_seen, tokens, norm = values[n + flags:]
    return _Report(StepStats.means(values[:n], tokens), int(tokens), norm, int(examples_seen),
                   values[n:n + flags])


def _stop_if_nonfinite(run: _Run, report: _Report) -> None:
    """Every rank stops together (a lone rank stopping would leave the others waiting), before
    this step logs or saves anything: the last checkpoint is the last good one."""
    if not any(report.nonfinite_ranks):
        return
    step, what, value, ranks = run.watch.first_failure(run.env)
    last = latest_checkpoint(run.run_dir)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    raise NonFiniteLossError(f"step {step}: the {what} is {value} on {ranks} rank(s); training stopped, "
                             f"{kept} (lower --lr, or check the cache)")


def _log_train(run: _Run, report: _Report, lr: float, step_time: float, data_wait: float) -> None:
    run.log.add({"split": "train", "step": run.step, "epochs": run.position.epochs(len(run.mix.caches)),
                 "lr": lr, **report.stats,
                 "tokens": report.tokens, "grad_norm": report.grad_norm, "step_time_s": step_time,
                 "data_wait_s": data_wait, "examples_seen": report.examples_seen})


def _evaluate(run: _Run) -> None:
    """Each cache's held-out slice, then all of them pooled (token-weighted): with several
    caches the record holds both, the per-cache figures as `<metric>/<cache label>`. A probe's
    figures are recorded the same way (`<metric>/probe-<folder>`) and never pooled."""
    started = time.perf_counter()
    caches = [*run.mix.caches, *run.probes]
    sequences: list[list] | None = [[] for _ in run.eval_batches] if run.config.heldout_per_sequence else None
    trained = len(run.mix.caches)
    per_cache = [evaluate(run.module, batches, run.env, run.autocast, run.mix.k if i < trained else cache.reader.k,
                          sequences[i] if sequences is not None else None)
                 for i, (cache, batches) in enumerate(zip(caches, run.eval_batches))]
    if sequences is not None:  # each rank its own file: no collective for a record only readers need
        rows = [{"cache": cache.label, "example_id": row["example_ids"][0], **{k: v for k, v in row.items()
                                                                              if k != "example_ids"}}
                for cache, found in zip(caches, sequences) for row in found]
        write_heldout_sequences(run.run_dir, run.step, run.env.rank, rows)
    record = {"split": "eval", "step": run.step, **pool_eval(per_cache[:trained])}
    labelled = list(zip(caches, per_cache)) if trained > 1 else list(zip(run.probes, per_cache[trained:]))
    for cache, metrics in labelled:
        record.update({f"{key}/{cache.label}": value for key, value in metrics.items()})
    record["eval_time_s"] = time.perf_counter() - started  # what a check costs (the grids' profiles)
    run.log.add(record)


def _save_checkpoint(run: _Run) -> None:
    """Collective: every rank hands in its part (model shards under FSDP, RNG, data position); rank 0 writes."""
    model_state = distributed.model_state(run.module)
    optim_state = distributed.optimizer_state(run.module, run.optimizer)
    per_rank = distributed.gather_objects(run.env, {"rng": rng_state(), "data": run.position.to_dict()})
    if run.env.is_main:
        state = {"step": run.step, "optimizer": optim_state, "scheduler": run.scheduler.state_dict(),
                 "rng": [r["rng"] for r in per_rank], "data": [r["data"] for r in per_rank],
                 "metrics": run.log.records, "world": run.env.world,
                 "elapsed_s": run.elapsed_before + time.perf_counter() - run.started}
        save_checkpoint(run.run_dir, run.step, distributed.unwrap(run.module).model, model_state, run.tokenizer,
                        state, keep=run.config.keep_checkpoints)
    distributed.barrier(run.env)


# ---- the end ----
def _finish(run: _Run) -> dict:
    """Save the distilled model (final/) and summary.json; returns the summary and the metrics."""
    config, env = run.config, run.env
    run.stream.close()
    final_state = distributed.model_state(run.module)
    final_dir = run.run_dir / FINAL_DIR
    if env.is_main:
        save_final(final_dir, distributed.unwrap(run.module).model, final_state, run.tokenizer,
                   getattr(torch, config.final_dtype))
        if config.plots:
            plot_metrics(run.log.records, run.run_dir)
    distributed.barrier(env)
    per_rank = distributed.gather_objects(env, run.position.counts)  # per rank, per cache
    summary = {
        "run_dir": str(run.run_dir), "final_dir": str(final_dir), "steps": run.step, "world": env.world,
        "train": run.log.last("train"), "eval": run.log.last("eval"),
        "precision": run.precision,
        "wall_time_s": time.perf_counter() - run.started,
        "train_time_s": run.elapsed_before + time.perf_counter() - run.started,
        "loader_wait_share": run.wait_total / run.step_total if run.step_total else 0.0,
        "peak_memory_gib": _peak_memory_gib(env.device),
        "data_counts": sum_counts(c for rank in per_rank for c in rank),
        "data_counts_by_cache": {cache.label: sum_counts(rank[i] for rank in per_rank if i < len(rank))
                                 for i, cache in enumerate(run.mix.caches)},
    }
    if env.is_main:  # what a report needs without replaying the metrics (last call's wall time)
        (run.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        write_student_card(final_dir, read_run_record(run.run_dir), run.log.records, summary)
    return {**summary, "metrics": run.log.records}


# ---- the process ----
def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@contextmanager
def _determinism(config: DistillConfig):
    """Seeds, fixed threads and deterministic kernels for this run only."""
    threads, was_deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)
