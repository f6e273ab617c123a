"""What each step of the grid should cost on this machine, before it runs.

The figures are measurements, kept as data (study/engine/profiles.py: one file per CPU class,
each figure with what it rests on; a figure the class lacks is the reference class's, labelled).
Before the cache exists a micro-batch is taken to hold 2.2 sequences (v1: about 2.3).
"""
from __future__ import annotations

import math

from study.grid_v2.budget import Budget, plan_budget
from study.grid_v2.config import ExperimentConfig
from study.engine.profiles import BENCHMARK_TASKS as TASKS
from study.engine.profiles import MBPP_ANSWER_TOKENS, MBPP_TRAIN_KEPT, REFERENCE_CLASS, Profile, load_profile

SEQUENCES_PER_MICRO_BATCH = 2.2
HELD_OUT_SHARE = 0.05


def expected_budget(config: ExperimentConfig) -> Budget:
    """The budget the grid will compute, from the cache's expected size."""
    train = max(1, round(config.n_examples * (1 - HELD_OUT_SHARE)))
    return plan_budget(config, train, max(1, math.ceil(train / SEQUENCES_PER_MICRO_BATCH)))


def estimate(config: ExperimentConfig, steps, budget: Budget | None = None,
             profile: Profile | None = None) -> list[dict]:
    """One row per step: its expected minutes and what the figure rests on."""
    budget = budget or expected_budget(config)
    p = profile or load_profile()
    return [{"step": s.name, "kind": s.kind, "minutes": round(_seconds(config, s, budget, p) / 60, 1),
             "basis": _basis(config, s, budget, p)} for s in steps]


def _seconds(config: ExperimentConfig, step, budget: Budget, p: Profile) -> float:
    n = config.n_examples
    if step.kind in ("select", "eval"):
        return p["engine_s"] + _tasks(config, step) * p["eval_s_per_task"][_engine(step)]
    if step.kind == "cache":
        if step.meta.get("policy") == "onpolicy":
            return p["engine_s"] + n * p["rollout_tokens"] / p["score_tok_s"]
        if step.meta.get("cache") == "mbpp-train":
            return p["engine_s"] + TASKS[("mbpp", "train")] * MBPP_TRAIN_KEPT * MBPP_ANSWER_TOKENS / p["score_tok_s"]
        return p["engine_s"] + n * p["cache_s_per_example"]
    if step.kind == "rollout":
        return p["engine_s"] + n * p["rollout_tokens"] / p["student_tok_s"]
    if step.kind == "train":
        schedule = _schedule(step, budget)
        micro = schedule.steps * budget.grad_accum
        evals = math.ceil(schedule.steps / schedule.eval_every) + 1
        size = "small" if step.meta.get("size") == "small" else "full"
        return p["train_overhead_s"] + micro * p["train_s_per_micro_batch"][size] + evals * p["heldout_eval_s"]
    if step.kind == "prune":
        return p["prune_s"]
    if step.kind == "speed":
        return p["engine_s"] + _speed_tokens(step) / p["speed_tok_s"][_engine(step)]
    return 5.0  # choices, the budget, the verified answers: seconds


def _basis(config: ExperimentConfig, step, budget: Budget, p: Profile) -> str:
    if step.kind in ("select", "eval"):
        return f"{_tasks(config, step)} tasks x {p['eval_s_per_task'][_engine(step)]} s + engine"
    if step.kind == "train":
        schedule = _schedule(step, budget)
        size = "small" if step.meta.get("size") == "small" else "full"
        return (f"{schedule.steps} steps x {budget.grad_accum} micro-batches x "
                f"{p['train_s_per_micro_batch'][size]} s + held-out checks")
    if step.kind == "cache":
        if step.meta.get("policy") == "onpolicy":
            return f"{config.n_examples} answers x {p['rollout_tokens']} tokens at {p['score_tok_s']:g} tok/s"
        if step.meta.get("cache") == "mbpp-train":
            return f"~{round(TASKS[('mbpp', 'train')] * MBPP_TRAIN_KEPT)} verified answers scored"
        return f"{config.n_examples} examples x {p['cache_s_per_example']} s + engine"
    if step.kind == "rollout":
        return f"{config.n_examples} answers x {p['rollout_tokens']} tokens at {p['student_tok_s']:g} tok/s"
    if step.kind == "speed":
        return (f"engine + {step.meta['prompts']} x {step.meta['new_tokens']} tokens at "
                f"{p['speed_tok_s'][_engine(step)]:g} tok/s (the evaluation's measured rate)")
    return "measured" if step.kind == "prune" else "in-process"


def _speed_tokens(step) -> int:
    return step.meta["prompts"] * step.meta["new_tokens"]


def _schedule(step, budget: Budget):
    return {"sweep": budget.sweep, "small": budget.small}.get(step.meta.get("size"), budget.full)


def _tasks(config: ExperimentConfig, step) -> int:
    split = "test" if step.meta.get("split") == "mid" else step.meta.get("split", "test")
    tasks = sum(TASKS[(b, split)] for b in step.meta.get("benchmarks", ("humaneval", "mbpp")))
    if config.eval_limit:
        tasks = min(tasks, config.eval_limit * len(step.meta.get("benchmarks", ())))
    return tasks


def _engine(step) -> str:
    if step.meta.get("role") == "teacher":
        return "teacher"
    return "small" if step.meta.get("size") == "small" else "full"


def total_hours(rows: list[dict]) -> float:
    return sum(r["minutes"] for r in rows) / 60


def estimate_markdown(rows: list[dict], budget: Budget, measured: bool, profile: Profile | None = None) -> list[str]:
    """The plan section's table: minutes per step and the total."""
    profile = profile or load_profile()
    lines = [f"Budget ({'measured on the off-policy cache' if measured else 'expected before the cache exists'}): "
             f"{budget.train_examples} training examples in {budget.micro_batches} micro-batches of "
             f"<= 512 tokens; {budget.grad_accum} micro-batches a step (about {budget.sequences_per_step:.1f} "
             f"sequences); full-size runs {budget.full.steps} steps (warmup {budget.full.warmup_steps}), "
             f"sweep runs {budget.sweep.steps}, smaller-student runs {budget.small.steps} "
             f"(midpoint {budget.small_midpoint}).", "",
             f"Expected cost: **{total_hours(rows):.1f} h** of this machine "
             f"(study/grid_v2/cost.py, profile {profile.cpu_class}: each figure rests on a measurement "
             "named in study/engine/profiles/).", "",
             *([f"Not measured on {profile.cpu_class}, taken from {REFERENCE_CLASS}: "
                f"{', '.join(profile.borrowed())}.", ""] if profile.borrowed() else []),
             "| step | expected | basis |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['minutes']:.1f} min | {r['basis']} |" for r in rows]
    return lines + [""]
