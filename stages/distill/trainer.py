"""Stage two: train a student on a teacher cache. Reads top to bottom, like nanoGPT's train.py.

    from stages.distill import DistillConfig, train
    summary = train(DistillConfig(cache_dir="caches/x", student="models/student", run_dir="runs/x"))

Single process, or `torchrun --nproc_per_node N` (DDP; FSDP2 with fsdp=True). Global batch =
per-rank micro-batch x world x grad_accum; the loss of a step is the mean over all its
response tokens, whatever rank or micro-batch they fell in. Kill it at any moment and rerun
the same command: it resumes from the last checkpoint and, with deterministic=True and
fixed threads on a CPU, ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from contextlib import contextmanager

import numpy as np
import torch
from tqdm import tqdm

from cache_schema import CacheError, CacheReader, tokenizer_fingerprint

from . import distributed
from .checkpoint import (MODEL_DIR, load_trainer_state, rng_state, save_checkpoint, save_final,
                         set_rng_state)
from .config import DistillConfig
from .data import BatchingOptions, BatchStream, DataPosition, batch_tokens, heldout_batches, move_batch
from .errors import DistillConfigError, NonFiniteLossError
from .heldout import evaluate
from .metrics import MetricsLog, plot_metrics
from .rundir import prepare_run_dir, run_record
from .student_model import DistillStudent, check_tokenizer, load_model, load_tokenizer

FINAL_DIR = "final"
SUMMARY_FILE = "summary.json"
TRAIN_STATS = ("loss", "fkl", "rkl", "head_weight", "top1_agreement", "ce", "teacher_topk_mass",
               "student_topk_mass")


def train(config: DistillConfig) -> dict:
    """Train (or resume) the run in config.run_dir; returns a summary of the run."""
    config.validate()
    env = distributed.setup(config.device)
    try:
        with _determinism(config):
            return _train(config, env)
    finally:
        distributed.teardown(env)


def _train(config: DistillConfig, env) -> dict:
    started = time.perf_counter()
    # ---- the cache and the student's tokenizer must agree before anything is trained ----
    reader = CacheReader(config.cache_dir)
    manifest = reader.manifest
    if len(manifest.shards) < env.world:
        raise CacheError(f"{config.cache_dir} has {len(manifest.shards)} shard(s) for {env.world} processes: "
                         "each process reads its own shards, so use at most that many")
    tokenizer = load_tokenizer(config.student)
    vocab = check_tokenizer(tokenizer, manifest, config.student)
    record = run_record(config, manifest, tokenizer_fingerprint(tokenizer), vocab, env.world)
    resume_from = prepare_run_dir(config, record, env)
    run_dir = config.run_path

    # ---- model, optimizer, schedule ----
    model = load_model(str(resume_from / MODEL_DIR) if resume_from else config.student)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = DistillStudent(model, config.loss_config(), vocab).to(env.device)
    module.train()
    module = distributed.wrap(module, env, config.fsdp)
    optimizer = _make_optimizer(module, config, env)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))
    autocast = torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=config.bf16)

    # ---- resume: optimizer, schedule, RNG, data position, metrics so far ----
    step, position, records, elapsed_before = 0, DataPosition(), [], 0.0
    if resume_from:
        state = load_trainer_state(resume_from)
        if state["world"] != env.world:
            raise DistillConfigError(f"{resume_from} was written by {state['world']} processes; resume with "
                                     f"the same number (this run has {env.world})")
        distributed.load_optimizer_state(module, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][env.rank])
        position = DataPosition.from_dict(state["data"][env.rank])
        step, records, elapsed_before = state["step"], state["metrics"], state["elapsed_s"]
    log = MetricsLog(run_dir, records, enabled=env.is_main)

    # ---- data ----
    options = _batching_options(config)
    stream = BatchStream(config.cache_dir, options, rank=env.rank, world=env.world,
                         num_workers=config.num_workers, seed=config.seed, position=position,
                         pin_memory=env.device.type == "cuda")
    eval_batches, _ = heldout_batches(config.cache_dir, options, rank=env.rank, world=env.world,
                                      max_examples=math.ceil(config.eval_max_examples / env.world))
    have_eval = distributed.sum_across(env, [len(eval_batches)])[0] > 0

    def checkpoint_state() -> dict:
        """Collective: every rank calls it; only rank 0's copy is complete."""
        model_state = distributed.model_state(module)
        optim_state = distributed.optimizer_state(module, optimizer)
        per_rank = distributed.gather_objects(env, {"rng": rng_state(), "data": position.to_dict()})
        return {"model": model_state, "step": step, "optimizer": optim_state, "scheduler": scheduler.state_dict(),
                "rng": [r["rng"] for r in per_rank], "data": [r["data"] for r in per_rank],
                "metrics": log.records, "world": env.world,
                "elapsed_s": elapsed_before + time.perf_counter() - started}

    # ---- the loop ----
    bar = tqdm(total=config.max_steps, initial=step, desc="distill", unit="step", dynamic_ncols=True,
               disable=not (env.is_main and config.progress))
    wait_total = step_total = 0.0
    if have_eval and step == 0:  # the starting point of the eval curve
        log.add({"split": "eval", "step": 0, **evaluate(module, eval_batches, env, autocast, manifest.k)})
    while step < config.max_steps:
        step_start = time.perf_counter()
        micro = [stream.next() for _ in range(config.grad_accum)]
        data_wait = time.perf_counter() - step_start
        local_tokens = [batch_tokens(b) for b in micro]
        global_tokens = distributed.sum_across(env, [sum(local_tokens)])[0]
        sums = dict.fromkeys(TRAIN_STATS, 0.0)
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            inputs = move_batch({k: v for k, v in batch.items() if k != "example_ids"}, env.device)
            with distributed.gradient_sync(module, last), autocast:
                loss, stats = module(**inputs, loss_weight=local_tokens[i] * env.world / global_tokens)
            _stop_unless_finite(env, stats["loss"], "loss", step + 1, run_dir)
            loss.backward()
            for key in TRAIN_STATS:
                sums[key] += stats[key] * stats["tokens"]
        grad_norm = _clip_gradients(module, config.grad_clip)
        _stop_unless_finite(env, grad_norm, "gradient norm", step + 1, run_dir)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        totals = dict(zip(TRAIN_STATS, distributed.sum_across(env, list(sums.values()))))
        step_time = time.perf_counter() - step_start
        wait_total, step_total = wait_total + data_wait, step_total + step_time
        if step % config.log_every == 0 or step == config.max_steps:
            log.add({"split": "train", "step": step, "epoch": position.epoch, "lr": lr,
                     **{k: v / global_tokens for k, v in totals.items()}, "tokens": int(global_tokens),
                     "grad_norm": grad_norm, "step_time_s": step_time, "data_wait_s": data_wait,
                     "examples_seen": distributed.sum_across(env, [position.counts.get("examples", 0)])[0]})
        bar.update(1)
        bar.set_postfix(loss=f"{totals['loss'] / global_tokens:.4f}", lr=f"{lr:.2e}")
        if have_eval and (step % config.eval_every == 0 or step == config.max_steps):
            log.add({"split": "eval", "step": step, **evaluate(module, eval_batches, env, autocast, manifest.k)})
            if env.is_main and config.plots:
                plot_metrics(log.records, run_dir)
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            state = checkpoint_state()
            if env.is_main:
                model_state = state.pop("model")
                save_checkpoint(run_dir, step, distributed.unwrap(module).model, model_state, tokenizer, state,
                                keep=config.keep_checkpoints)
            distributed.barrier(env)
    bar.close()

    # ---- the distilled model ----
    final_state = distributed.model_state(module)
    final_dir = run_dir / FINAL_DIR
    if env.is_main:
        save_final(final_dir, distributed.unwrap(module).model, final_state, tokenizer,
                   getattr(torch, config.final_dtype))
        if config.plots:
            plot_metrics(log.records, run_dir)
    distributed.barrier(env)
    counts = distributed.gather_objects(env, position.counts)
    summary = {
        "run_dir": str(run_dir), "final_dir": str(final_dir), "steps": step, "world": env.world,
        "train": log.last("train"), "eval": log.last("eval"),
        "wall_time_s": time.perf_counter() - started,
        "train_time_s": elapsed_before + time.perf_counter() - started,
        "loader_wait_share": wait_total / step_total if step_total else 0.0,
        "peak_memory_gib": _peak_memory_gib(env.device),
        "data_counts": {k: sum(c.get(k, 0) for c in counts) for k in set().union(*counts)},
    }
    if env.is_main:  # what a report needs without replaying the metrics (last call's wall time)
        (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "metrics": log.records}


# ---- helpers, in the order the loop uses them ----
def _batching_options(config: DistillConfig) -> BatchingOptions:
    return BatchingOptions(max_batch_tokens=config.max_batch_tokens, max_batch_examples=config.max_batch_examples,
                           max_seq_len=config.max_seq_len, shuffle_buffer=config.shuffle_buffer,
                           sort_pool=config.sort_pool, drop_length_truncated=config.drop_length_truncated,
                           eval_fraction=config.eval_fraction)


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


def _clip_gradients(module, max_norm: float) -> float:
    params = [p for p in module.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
        norm = norm.full_tensor()
    return float(norm)


def _stop_unless_finite(env, value: float, what: str, step: int, run_dir) -> None:
    """Every rank stops together (a lone rank stopping would leave the others waiting)."""
    bad = distributed.sum_across(env, [0.0 if math.isfinite(value) else 1.0])[0]
    if bad:
        from .checkpoint import latest_checkpoint

        last = latest_checkpoint(run_dir)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(f"step {step}: the {what} is {value} on {int(bad)} rank(s); training stopped, "
                                 f"{kept} (lower --lr, or check the cache)")


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
