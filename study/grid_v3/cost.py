"""What each step of grid v3 should cost on this machine, before it runs: the figures of this
CPU class's measured profile (study/engine/profiles.py; a figure it lacks is the reference
class's, labelled), applied to v3's steps. A sampled evaluation generates and runs n answers a
task, each costed at the profile's sampled-answer figure (at T = 0.8 they run about twice a greedy
answer's length); a held-out check scales with the sequences it
scores (the profile's figure is for 64; a run scores its held-out slice and as many reference
programs, the probe)."""
from __future__ import annotations

from common.machine import cpu_class
from study.engine.profiles import BENCHMARK_TASKS as TASKS
from study.engine.profiles import (MBPP_ANSWER_TOKENS, MBPP_REFERENCE_TOKENS, MBPP_TRAIN_KEPT, REFERENCE_CLASS,
                                   Profile, load_profile)
from study.engine.runner import read_record, step_state
from study.grid_v3.config import GridV3Config

PROFILE_HELDOUT_EXAMPLES = 64


def estimate(config: GridV3Config, steps, profile: Profile | None = None) -> list[dict]:
    """One row per step: its expected minutes and what the figure rests on."""
    p = profile or load_profile()
    rows = []
    for step in steps:
        seconds, basis = _cost(config, step, p)
        rows.append({"step": step.name, "kind": step.kind, "minutes": round(seconds / 60, 1), "basis": basis})
    return rows


def total_hours(rows: list[dict]) -> float:
    return sum(r["minutes"] for r in rows) / 60


def with_progress(rows: list[dict], steps, root) -> list[dict]:
    """The rows with each step's state in the grid at `root`, and for a finished step the minutes
    it took and the CPU class it ran on (wall time: pauses and other jobs included), so the
    estimate of what is left counts only the steps not done."""
    out = []
    for row, step in zip(rows, steps, strict=True):
        record = read_record(root, step.name)
        state = step_state(root, step)
        took = record.get("wall_s") if state == "done" and record else None
        out.append({**row, "state": state, "took_minutes": None if took is None else round(took / 60, 1),
                    "ran_on": cpu_class(record["machine"]) if took is not None and record.get("machine") else None})
    return out


def hours_left(rows: list[dict]) -> float:
    return sum(r["minutes"] for r in rows if r.get("state") != "done") / 60


def _cost(config: GridV3Config, step, p: Profile) -> tuple[float, str]:
    if step.kind == "eval":
        tasks, samples = _tasks(config, step), step.meta.get("n_samples", 1)
        sampled = step.meta.get("mode") == "sampled"  # a sampled answer runs longer than a greedy one
        per_answer, how = (sampled_answer_s(p, _engine(step)) if sampled
                           else (p["eval_s_per_task"][_engine(step)], ""))
        return (p["engine_s"] + tasks * samples * per_answer,
                f"{tasks} tasks x {samples} {'sampled' if sampled else 'greedy'} answer(s) x {per_answer} s{how} "
                "+ engine")
    if step.kind == "cache" and step.meta.get("cache") == "mbpp-train":
        answers = round(TASKS[("mbpp", "train")] * MBPP_TRAIN_KEPT)
        return (p["engine_s"] + answers * MBPP_ANSWER_TOKENS / p["score_tok_s"],
                f"~{answers} verified answers of ~{MBPP_ANSWER_TOKENS} tokens scored at {p['score_tok_s']:g} tok/s")
    if step.kind == "cache" and step.meta.get("cache") == "mbpp-references":
        tasks = TASKS[("mbpp", "train")]
        if config.eval_limit:
            tasks = min(tasks, config.eval_limit)
        return (p["engine_s"] + tasks * MBPP_REFERENCE_TOKENS / p["score_tok_s"],
                f"{tasks} reference programs of ~{MBPP_REFERENCE_TOKENS} tokens scored at {p['score_tok_s']:g} tok/s")
    if step.kind == "cache" and step.meta.get("teacher") == "parent":  # the 0.5B answers: faster than the 1.5B
        rate = p["eval_s_per_task"]["full"] / p["eval_s_per_task"]["teacher"]
        per_example = p["cache_s_per_example"] * rate
        return (p["engine_s"] + config.n_examples * per_example,
                f"{config.n_examples} examples x {per_example:.2f} s (the teacher's {p['cache_s_per_example']} s x "
                f"{rate:.2f}, the 0.5B's answer time over the 1.5B's in evaluation) + engine")
    if step.kind == "cache":
        return (p["engine_s"] + config.n_examples * p["cache_s_per_example"],
                f"{config.n_examples} examples x {p['cache_s_per_example']} s + engine")
    if step.kind == "train":
        size = "small" if step.meta.get("size") == "small" else "full"
        steps = step.meta["steps"]
        scored = 2 * config.heldout_examples  # the held-out slice and as many reference programs (the probe)
        checks = step.meta["heldout_checks"] * p["heldout_eval_s"] * scored / PROFILE_HELDOUT_EXAMPLES
        return (p["train_overhead_s"] + steps * config.grad_accum * p["train_s_per_micro_batch"][size] + checks,
                f"{steps} steps x {config.grad_accum} micro-batches x {p['train_s_per_micro_batch'][size]} s "
                f"+ {step.meta['heldout_checks']} checks of {config.heldout_examples} held-out sequences and "
                f"{config.heldout_examples} reference programs")
    if step.kind == "prune":
        return p["prune_s"], "measured"
    if step.kind == "speed":
        tokens, rate = step.meta["prompts"] * step.meta["new_tokens"], p["speed_tok_s"][_engine(step)]
        return (p["engine_s"] + tokens / rate,
                f"{step.meta['prompts']} prompts x {step.meta['new_tokens']} tokens at {rate:g} tok/s + engine")
    return 5.0, "in-process"  # the verified answers, the references, a choice


def sampled_answer_s(p: Profile, engine: str) -> tuple[float, str]:
    """A sampled answer's seconds: the class's own figure, or where it has none its greedy one
    times the reference class's sampled/greedy ratio (a slow class is slow at both)."""
    name = "eval_s_per_sampled_answer"
    if name not in p.borrowed():
        return p[name][engine], ""
    reference = load_profile(REFERENCE_CLASS)
    ratio = reference[name][engine] / reference["eval_s_per_task"][engine]
    return (round(p["eval_s_per_task"][engine] * ratio, 3),
            f" (its greedy {p['eval_s_per_task'][engine]} s x {ratio:.2f}, {REFERENCE_CLASS}'s sampled/greedy)")


def _tasks(config: GridV3Config, step) -> int:
    benchmarks = step.meta.get("benchmarks", ("humaneval", "mbpp"))
    tasks = sum(TASKS[(b, step.meta["split"])] for b in benchmarks)
    return min(tasks, config.eval_limit * len(benchmarks)) if config.eval_limit else tasks


def _engine(step) -> str:
    model = step.meta.get("model", "")
    if step.meta.get("role") == "teacher":
        return "teacher"
    return "small" if model == "small" or model.startswith("small-") else "full"
