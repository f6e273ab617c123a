"""What each step of the grid should cost on this 2-core CPU machine, before it runs.

Every figure below is a measurement of this machine (the v1 grid's report in
results/experiment/v1-report.md, docs/design.md and the README), not a guess:
- vLLM engine start and model load: about 40 s, counted as 60 s with the process start.
- the teacher's cache: 1.15 s per CodeAlpaca example (v1: 1,000 examples in 19.1 min plain,
  179k tokens; 21.2 min enhanced, 100k tokens).
- the student's rollouts: 0.5B generates about 230 tokens/s; answers average about 190
  tokens (the on-policy round's README estimate).
- the teacher scoring given answers: about 200 tokens/s (README, on-policy rounds).
- evaluation, per task with its sandbox run: 1.5B 1.6 s (v1: teacher 18.1 min for 664
  tasks), 0.5B 0.75 s (v1: 5.0-8.4 min for 664 tasks; "about 10 min" in the brief), the
  width-pruned 0.5B 0.95 s (more answers loop to the token limit).
- training, per 512-token micro-batch with tcmalloc: 0.5B 3.3 s (v1: 2.8 s on the enhanced
  cache, 3.3 s on the plain one, whose answers fill the budget), the pruned 552M 3.0 s; a
  held-out evaluation (64 examples) about 30 s; loading, checkpoints and final/ about 2 min.
- width pruning: about 3.5 min (README).
- fixed-length decode speed (`akd speed`, 64 prompts x 256 tokens, batched): engine start plus
  the tokens at the evaluation's aggregate rate measured on the v2 grid: 0.5B 609 tokens/s
  (its HumanEval + MBPP test answers, 184,259 tokens in 303 s), the 1.5B teacher 84 tokens/s
  (MBPP selection, plain, 11,548 tokens in 138 s; few prompts, so a low bound on its batched
  rate); the pruned 552M taken at the 0.5B rate (not measured before it runs).
Before the cache exists a micro-batch is taken to hold 2.2 sequences (v1: about 2.3).
"""
from __future__ import annotations

import math

from study.grid_v2.budget import Budget, plan_budget
from study.grid_v2.config import ExperimentConfig

ENGINE_S = 60.0
CACHE_S_PER_EXAMPLE = 1.15
ROLLOUT_TOKENS, STUDENT_TOK_S, SCORE_TOK_S = 190, 230.0, 200.0
EVAL_S_PER_TASK = {"teacher": 1.6, "full": 0.75, "small": 0.95}
TRAIN_S_PER_MICRO_BATCH = {"full": 3.3, "small": 3.0}
HELDOUT_EVAL_S, TRAIN_OVERHEAD_S = 30.0, 120.0
PRUNE_S = 210.0
SPEED_TOK_S = {"teacher": 84.0, "full": 609.0, "small": 609.0}
SEQUENCES_PER_MICRO_BATCH = 2.2
HELD_OUT_SHARE = 0.05
TASKS = {("humaneval", "test"): 164, ("mbpp", "test"): 500, ("mbpp", "train"): 374,
         ("mbpp", "selection"): 100}
MBPP_TRAIN_KEPT, MBPP_ANSWER_TOKENS = 0.55, 130  # the teacher passes ~half of MBPP train; short answers


def expected_budget(config: ExperimentConfig) -> Budget:
    """The budget the grid will compute, from the cache's expected size."""
    train = max(1, round(config.n_examples * (1 - HELD_OUT_SHARE)))
    return plan_budget(config, train, max(1, math.ceil(train / SEQUENCES_PER_MICRO_BATCH)))


def estimate(config: ExperimentConfig, steps, budget: Budget | None = None) -> list[dict]:
    """One row per step: its expected minutes and what the figure rests on."""
    budget = budget or expected_budget(config)
    return [{"step": s.name, "kind": s.kind, "minutes": round(_seconds(config, s, budget) / 60, 1),
             "basis": _basis(config, s, budget)} for s in steps]


def _seconds(config: ExperimentConfig, step, budget: Budget) -> float:
    n = config.n_examples
    if step.kind in ("select", "eval"):
        return ENGINE_S + _tasks(config, step) * EVAL_S_PER_TASK[_engine(step)]
    if step.kind == "cache":
        if step.meta.get("policy") == "onpolicy":
            return ENGINE_S + n * ROLLOUT_TOKENS / SCORE_TOK_S
        if step.meta.get("cache") == "mbpp-train":
            return ENGINE_S + TASKS[("mbpp", "train")] * MBPP_TRAIN_KEPT * MBPP_ANSWER_TOKENS / SCORE_TOK_S
        return ENGINE_S + n * CACHE_S_PER_EXAMPLE
    if step.kind == "rollout":
        return ENGINE_S + n * ROLLOUT_TOKENS / STUDENT_TOK_S
    if step.kind == "train":
        schedule = _schedule(step, budget)
        micro = schedule.steps * budget.grad_accum
        evals = math.ceil(schedule.steps / schedule.eval_every) + 1
        size = "small" if step.meta.get("size") == "small" else "full"
        return TRAIN_OVERHEAD_S + micro * TRAIN_S_PER_MICRO_BATCH[size] + evals * HELDOUT_EVAL_S
    if step.kind == "prune":
        return PRUNE_S
    if step.kind == "speed":
        return ENGINE_S + _speed_tokens(step) / SPEED_TOK_S[_engine(step)]
    return 5.0  # choices, the budget, the verified answers: seconds


def _basis(config: ExperimentConfig, step, budget: Budget) -> str:
    if step.kind in ("select", "eval"):
        return f"{_tasks(config, step)} tasks x {EVAL_S_PER_TASK[_engine(step)]} s + engine"
    if step.kind == "train":
        schedule = _schedule(step, budget)
        size = "small" if step.meta.get("size") == "small" else "full"
        return (f"{schedule.steps} steps x {budget.grad_accum} micro-batches x "
                f"{TRAIN_S_PER_MICRO_BATCH[size]} s + held-out checks")
    if step.kind == "cache":
        if step.meta.get("policy") == "onpolicy":
            return f"{config.n_examples} answers x {ROLLOUT_TOKENS} tokens at {SCORE_TOK_S:g} tok/s"
        if step.meta.get("cache") == "mbpp-train":
            return f"~{round(TASKS[('mbpp', 'train')] * MBPP_TRAIN_KEPT)} verified answers scored"
        return f"{config.n_examples} examples x {CACHE_S_PER_EXAMPLE} s + engine"
    if step.kind == "rollout":
        return f"{config.n_examples} answers x {ROLLOUT_TOKENS} tokens at {STUDENT_TOK_S:g} tok/s"
    if step.kind == "speed":
        return (f"engine + {step.meta['prompts']} x {step.meta['new_tokens']} tokens at "
                f"{SPEED_TOK_S[_engine(step)]:g} tok/s (the evaluation's measured rate)")
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


def estimate_markdown(rows: list[dict], budget: Budget, measured: bool) -> list[str]:
    """The plan section's table: minutes per step and the total."""
    lines = [f"Budget ({'measured on the off-policy cache' if measured else 'expected before the cache exists'}): "
             f"{budget.train_examples} training examples in {budget.micro_batches} micro-batches of "
             f"<= 512 tokens; {budget.grad_accum} micro-batches a step (about {budget.sequences_per_step:.1f} "
             f"sequences); full-size runs {budget.full.steps} steps (warmup {budget.full.warmup_steps}), "
             f"sweep runs {budget.sweep.steps}, smaller-student runs {budget.small.steps} "
             f"(midpoint {budget.small_midpoint}).", "",
             f"Expected cost: **{total_hours(rows):.1f} h** of this machine "
             "(study/cost.py: each figure rests on a measurement named there).", "",
             "| step | expected | basis |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['minutes']:.1f} min | {r['basis']} |" for r in rows]
    return lines + [""]
