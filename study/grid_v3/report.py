"""Grid v3's report: its questions answered first, from whatever steps are done (a partial report
says which comparisons still wait), then the table of scores and which machine ran each step;
every evaluation's per-task samples are exported beside it (samples/<cpu class>/<model>/<split>-<mode>/).

Every comparison is paired over the tasks both models were scored on, on per-task pass rates of
the sampled evaluations (study/engine/stats.compare_rates), pooled over the benchmarks both
share (HumanEval, MBPP test, and MBPP train for a model never trained on it), and only between
evaluations made on one CPU class (a pair scored on two classes waits, and the report says for
what); a question over several arms decides on Holm-adjusted p; every "no" states the smallest
difference it could have detected with 80% power.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.machine import describe as describe_machine
from study.engine.chart import recovery_chart
from study.engine.results import (heldout_curve, heldout_fidelity, heldout_sequences, load_pass_rates, load_verdicts,
                                  probe_curve)
from study.engine.runner import step_state
from study.engine.settings import REVISIONS_KEY, split_list
from study.engine.profiles import load_profile
from stages.evaluate.speed import read_speed
from study.engine.stats import (best_answer_count, compare_pooled, compare_rates, detectable_in_family, holm,
                               paired_weighted_bootstrap, precision_cost, samples_per_task)
from study.grid_v3.config import GridV3Config
from study.grid_v3.cost import estimate, sampled_answer_s
from study.grid_v3.plan import ORIGINALS, TIMED, GridV3

ALPHA = 0.05
FIGURE = "recovery.png"
BENCHMARKS = {"test": ("humaneval", "mbpp"), "train": ("mbpp",)}


def build_v3_report(config: GridV3Config, out_dir: Path) -> dict:
    """Write report.md and report.json to out_dir; return the JSON."""
    grid = GridV3(config)
    steps = grid.steps()
    states = {s.name: step_state(config.root, s) for s in steps}
    scores = Scores.of(grid)
    arms = [s.meta["model"] for s in steps if s.kind == "train" and "teacher_choice" not in s.meta]
    speed = _size_speed(grid, scores)
    report = {
        "config": json.loads((config.root / "experiment.json").read_text()) if (config.root / "experiment.json")
        .exists() else None,
        "progress": {"done": sum(v == "done" for v in states.values()), "steps": len(steps),
                     "pending": [n for n, v in states.items() if v != "done"]},
        "answers": [_beats_original(grid, scores, arms), _target_near(scores),
                    _pruned_recovery(grid, scores, config, speed), _losses_front(grid, scores, config)],
        "table": _table(scores),
        "speed": speed,
        "power": _greedy_or_sampled(scores, arms, config.eval_samples),
        "answers_per_task": _answers_per_task(scores, arms, config),
        "fidelity": {arm: f for arm in arms if states[f"train-{arm}"] == "done"
                     and (f := heldout_fidelity(grid.run_dir(arm)))},
        "mbpp_answers": _read(grid.mbpp_data.with_name("mbpp-train-verified.meta.json")),
        "small_teacher": _read(grid.small_teacher_file),
        "machines": _machines(config.root),
        "revisions": _revisions(config.root),
    }
    report["unpaired"] = scores.unpaired
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["samples"] = _export_samples(grid, out_dir / "samples")
    recovery = report["answers"][2].get("rows", [])
    if recovery or report["fidelity"]:
        recovery_chart(recovery, report["fidelity"], out_dir / FIGURE)
        report["figure"] = FIGURE
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    return report


def original_of(arm: str) -> str:
    return "small" if arm.startswith("small-") else "student"


# ---- what was scored ----
class Scores:
    """Per-task pass rates of every finished evaluation, {CPU class: {model: {benchmark: {task:
    rate}}}} (benchmark "mbpp_train" for MBPP's train split), sampled and greedy apart; a
    comparison pairs two models within one class, and remembers the pairs it could not."""

    def __init__(self, sampled: dict, greedy: dict, verdicts: dict | None = None):
        """`verdicts`: {CPU class: {model: {benchmark: {task: [passed, ...]}}}} of the sampled
        evaluations, each task's answers in the order they were sampled."""
        self.sampled, self.greedy, self.verdicts = sampled, greedy, verdicts or {}
        self.unpaired: list[dict] = []

    @classmethod
    def of(cls, grid: GridV3) -> "Scores":
        rates: dict = {"sampled": {}, "greedy": {}}
        verdicts: dict = {}
        for (model, split, mode), folders in grid.evaluations_done().items():
            for cpu, folder in folders.items():
                for benchmark in BENCHMARKS[split]:
                    name = "mbpp_train" if split == "train" else benchmark
                    rates[mode].setdefault(cpu, {}).setdefault(model, {})[name] = load_pass_rates(folder, benchmark)
                    if mode == "sampled":
                        verdicts.setdefault(cpu, {}).setdefault(model, {})[name] = load_verdicts(folder, benchmark)
        return cls(rates["sampled"], rates["greedy"], verdicts)

    def answers_of(self, cpu: str, model: str, default: int) -> int:
        """Answers per task of a model's sampled evaluations on `cpu` (the fewest of any task)."""
        found = [len(v) for tasks in self.verdicts.get(cpu, {}).get(model, {}).values() for v in tasks.values()]
        return min(found) if found else default

    def compare(self, a: str, b: str, benchmarks: tuple[str, ...] | None = None) -> dict | None:
        """a against b (sampled), pooled over the benchmarks both hold on the CPU class where they
        share the most (or those named); None where either is not scored yet or the two were
        scored on different classes only (then noted in `unpaired`)."""
        found = {}
        for cpu, models in sorted(self.sampled.items()):
            if a in models and b in models:
                found[cpu] = [x for x in models[a] if x in models[b] and (benchmarks is None or x in benchmarks)]
        cpu = max(found, key=lambda c: len(found[c]), default=None)
        if cpu is None or not found[cpu]:
            self._note_unpaired(a, b)
            return None
        shared = found[cpu]
        rates = self.sampled[cpu]
        result = compare_pooled(rates[a], rates[b], benchmarks=tuple(shared), names=(a, b), test=compare_rates)
        return {"a": a, "b": b, "cpu_class": cpu, "benchmarks": shared, **_brief(result["pooled"]),
                "per_benchmark": {x: _brief(r) for x, r in result["per_benchmark"].items()}}

    def _note_unpaired(self, a: str, b: str) -> None:
        where = {m: sorted(c for c, models in self.sampled.items() if m in models) for m in (a, b)}
        if where[a] and where[b] and not any(u["a"] == a and u["b"] == b for u in self.unpaired):
            self.unpaired.append({"a": a, "b": b, "a_on": where[a], "b_on": where[b],
                                  "waits_for": f"{b if b in ORIGINALS else a} evaluated on "
                                               f"{(where[a] if b in ORIGINALS else where[b])[0]}"})


def _brief(result: dict) -> dict:
    keys = ("n_tasks", "pass_rate_a", "pass_rate_b", "diff", "se", "ci_low", "ci_high", "p_value", "detectable_diff")
    return {k: result[k] for k in keys}


def _pts(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _no(result: dict) -> str:
    detect = result["detectable_diff"]
    return (f"{_pts(result['diff'])} pts (95% CI {_pts(result['ci_low'])} to {_pts(result['ci_high'])}, "
            f"p = {result['p_value']:.2g}, {result['n_tasks']} tasks; a true difference of "
            f"{'–' if detect is None else f'{100 * detect:.1f}'} pts would be found 4 times in 5)")


# ---- the answers ----
def _beats_original(grid: GridV3, scores: Scores, arms: list[str]) -> dict:
    question = "Does any distilled student beat its original significantly (pooled, Holm-adjusted over the arms)?"
    found = {arm: r for arm in arms if (r := scores.compare(arm, original_of(arm)))}
    if not found:
        return {"question": question, "open": True, "answer": "not yet: no distilled student and its original "
                                                                "are both scored", "comparisons": []}
    pending = sorted(set(arms) - set(found))
    adjusted = holm({arm: r["p_value"] for arm, r in found.items()})
    # the family is every arm: until all are scored, the adjusted p if none still to come has a smaller p
    at_worst = holm({**{arm: r["p_value"] for arm, r in found.items()}, **dict.fromkeys(pending, 1.0)})
    for arm, r in found.items():
        r["holm_p"], r["holm_p_all_arms_at_worst"] = adjusted[arm], at_worst[arm]
    better = [arm for arm, r in found.items() if r["holm_p"] < ALPHA and r["diff"] > 0]
    best = max(found.values(), key=lambda r: r["diff"])
    if better:
        so_far = f" so far ({len(found)} of {len(arms)} arms scored)" if pending else ""
        answer = f"yes{so_far}: " + "; ".join(
            f"{arm} {_pts(found[arm]['diff'])} pts over {original_of(arm)} (95% CI {_pts(found[arm]['ci_low'])} to "
            f"{_pts(found[arm]['ci_high'])}, p = {found[arm]['p_value']:.2g}, Holm p = {found[arm]['holm_p']:.2g}"
            + (f" over the arms scored, {found[arm]['holm_p_all_arms_at_worst']:.2g} over all {len(arms)} if none "
               "still to come has a smaller p" if pending else "") + ")" for arm in better)
    else:  # a yes must pass Holm over every arm: the best arm's p below alpha / arms
        family_detect = detectable_in_family(best["se"], len(arms), alpha=ALPHA)
        best["budget_for_a_yes"] = budget_for_a_yes({**best, "detectable_diff": family_detect},
                                                    _tokens_seen(grid, best["a"]))
        holm_text = f"Holm p = {best['holm_p']:.2g} over the {len(found)} arm(s) scored" + (
            f", {best['holm_p_all_arms_at_worst']:.2g} over all {len(arms)} if none still to come has a smaller p"
            if pending else "")
        alone = best["p_value"] < ALPHA and best["diff"] > 0  # significant alone, not as one of the family
        answer = ((f"not after correcting for {len(found)} comparisons; the largest gain, {best['a']}: {_no(best)}, "
                   f"but {holm_text}" if alone else
                   f"no, of {len(found)} arm(s) scored; the largest gain, {best['a']}: {_no(best)}, {holm_text}")
                  + f"; a yes over all {len(arms)} arms needs a true difference of ~{100 * family_detect:.1f} pts "
                  f"(found 4 times in 5 at p < {ALPHA:g}/{len(arms)}); {_budget_text(best['budget_for_a_yes'])}")
    return {"question": question, "open": bool(pending), "answer": answer, "waiting_for": pending,
            "comparisons": list(found.values())}


def _target_near(scores: Scores) -> dict:
    question = ("Does target-near data (the teacher's verified MBPP-train answers) do what CodeAlpaca does "
                "not? (AKD on the mix and on MBPP train alone, against AKD on CodeAlpaca, on HumanEval and "
                "MBPP test)")
    pairs = [r for a in ("akd-mix", "akd-mbpp") if (r := scores.compare(a, "akd", BENCHMARKS["test"]))]
    if not pairs:
        return {"question": question, "open": True, "answer": "not yet", "comparisons": []}
    lines = []
    for r in pairs:
        verdict = "better" if r["p_value"] < ALPHA and r["diff"] > 0 else (
            "worse" if r["p_value"] < ALPHA else "no significant difference")
        lines.append(f"{r['a']} vs akd: {verdict}, {_no(r)}")
    return {"question": question, "open": len(pairs) < 2, "answer": "; ".join(lines), "comparisons": pairs}


def _pruned_recovery(grid: GridV3, scores: Scores, config: GridV3Config, speed: list[dict]) -> dict:
    question = ("How much of the pruned student's loss does distillation recover per million training tokens, "
                "and with which loss?")
    choice = _read(grid.small_teacher_file)
    chose = (f"its teacher: the {'unpruned parent' if choice['chosen'] == 'parent' else '1.5B'}, because "
             f"{choice['reason']}. " if choice else "")
    pruning = scores.compare("student", "small")  # what pruning cost: the gap distillation may close
    cost = pruning["diff"] if pruning and pruning["diff"] > 0 else None
    rows = []
    for loss in split_list(config.small_losses):
        arm = f"small-{loss}"
        result = scores.compare(arm, "small")
        curve = heldout_curve(grid.run_dir(arm))
        if result is None or not curve:
            continue
        tokens = curve[-1]["tokens_seen"]
        probe = probe_curve(grid.run_dir(arm), grid.references_cache.name)
        rows.append({"arm": arm, "loss": loss, "tokens_seen": tokens, "fkl_before": curve[0]["fkl"],
                     "fkl_after": curve[-1]["fkl"], "fkl_by_half": fkl_by_half(curve), "curve": curve,
                     "probe_curve": probe, **result, "budget_for_a_yes": budget_for_a_yes(result, tokens),
                     "pass_gain_per_m_tokens": result["diff"] / (tokens / 1e6) if tokens else None,
                     "recovered_share": result["diff"] / cost if cost else None})
    kept = _speed_text(speed)
    if not rows:
        return {"question": question, "open": True, "answer": chose + "not yet" + kept, "rows": [],
                "pruning_cost": pruning}
    best = max(rows, key=lambda r: r["diff"])
    share = best["recovered_share"]
    recovered = ("" if share is None else
                 f", {100 * share:.0f}% of the {100 * cost:.1f} pts pruning cost it (pooled over "
                 f"{', '.join(pruning['benchmarks'])}; {100 * share / (best['tokens_seen'] / 1e6):.0f}% per million "
                 "tokens)")
    answer = (f"{chose}best {best['arm']}: {_pts(best['diff'])} pts pass@1 over the pruned student after "
              f"{best['tokens_seen'] / 1e6:.2f}M tokens{recovered} (held-out FKL {best['fkl_before']:.3f} -> "
              f"{best['fkl_after']:.3f}" + (f"; NLL of MBPP train's reference programs {best['probe_curve'][0]['nll']:.3f}"
                                            f" -> {best['probe_curve'][-1]['nll']:.3f}" if best["probe_curve"] else "")
              + "); " + "; ".join(f"{r['arm']} {_pts(r['diff'])} pts (p = {r['p_value']:.2g})" for r in rows))
    if best["p_value"] >= ALPHA:
        halves = best["fkl_by_half"]
        answer += (f"; not significant: {_budget_text(best['budget_for_a_yes'])}" + (
            f" (its held-out FKL fell {halves[0]:.3f} over the first half of its tokens and {halves[1]:.3f} over "
            "the second)" if halves else ""))
    answer += kept
    return {"question": question, "open": len(rows) < len(split_list(config.small_losses)), "answer": answer,
            "rows": rows, "pruning_cost": pruning}


def _losses_front(grid: GridV3, scores: Scores, config: GridV3Config) -> dict:
    question = ("Is AKD on the FKL/RKL front (no worse than KD on held-out FKL and than RKD on RKL), and does it "
                "beat KD and RKD at pass@1?")
    sizes = {"small": ("small-akd", "small-fkl", "small-rkl"), "full": ("akd", "fkl", "rkl")}
    parts, found = [], {}
    for size, (akd, kd, rkd) in sizes.items():
        seqs = {arm: heldout_sequences(grid.run_dir(arm)) for arm in (akd, kd, rkd)}
        if not all(seqs.values()):
            continue
        fkl = _heldout_difference(seqs[akd], seqs[kd], "fkl")
        rkl = _heldout_difference(seqs[akd], seqs[rkd], "rkl")
        on_front = fkl["ci_low"] <= 0 and rkl["ci_low"] <= 0  # not significantly worse on either
        pass_at_1 = [r for other in (kd, rkd) if (r := scores.compare(akd, other))]
        found[size] = {"fkl_vs_kd": fkl, "rkl_vs_rkd": rkl, "on_front": on_front, "pass@1": pass_at_1}
        parts.append(f"{size}: {'on' if on_front else 'off'} the front: held-out FKL AKD - KD {_nats(fkl)}, RKL "
                     f"AKD - RKD {_nats(rkl)} over {fkl['n_sequences']} sequences"
                     + "".join(f"; pass@1 vs {r['b']}: {_no(r)}" for r in pass_at_1))
    if not parts:
        return {"question": question, "open": True, "answer": "not yet", "sizes": {}}
    return {"question": question, "open": len(parts) < 2, "answer": "; ".join(parts), "sizes": found}


def _tokens_seen(grid: GridV3, arm: str) -> int | None:
    curve = heldout_curve(grid.run_dir(arm))
    return curve[-1]["tokens_seen"] if curve else None


def budget_for_a_yes(result: dict, tokens_seen: int | None) -> dict | None:
    """The training tokens at which a gain growing in proportion to tokens would reach the
    difference this comparison finds 4 times in 5: a linear extrapolation from one budget, to be
    read as a lower bound on what a yes needs (gains usually flatten), never as a measurement."""
    detect, diff = result.get("detectable_diff"), result["diff"]
    if not tokens_seen or detect is None:
        return None
    if diff <= 0:
        return {"tokens_seen": tokens_seen, "tokens_needed": None, "times": None}
    times = max(1.0, detect / diff)
    return {"tokens_seen": tokens_seen, "tokens_needed": round(tokens_seen * times), "times": round(times, 1)}


def fkl_by_half(curve: list[dict]) -> tuple[float, float] | None:
    """How far held-out FKL fell over the first and the second half of a run's tokens (the point
    nearest half-way splits them): a curve still falling as fast in its second half is far from
    flat. None for a curve of fewer than three points."""
    if len(curve) < 3:
        return None
    half = curve[-1]["tokens_seen"] / 2
    middle = min(curve[1:-1], key=lambda p: abs(p["tokens_seen"] - half))
    return curve[0]["fkl"] - middle["fkl"], middle["fkl"] - curve[-1]["fkl"]


def _budget_text(budget: dict | None) -> str:
    if budget is None:
        return "no budget for a yes can be extrapolated (tokens seen or detectable difference unknown)"
    seen = budget["tokens_seen"] / 1e6
    if budget["tokens_needed"] is None:
        return f"no gain at {seen:.2f}M training tokens to extrapolate a budget for a yes from"
    return (f"extrapolated linearly from {seen:.2f}M training tokens (a gain in proportion to tokens: a lower "
            f"bound, gains flatten), a yes would need ~{budget['tokens_needed'] / 1e6:.1f}M tokens "
            f"({budget['times']:g}x)")


def _heldout_difference(a: dict, b: dict, key: str) -> dict:
    """A - B of a held-out figure over the sequences both runs scored (tokens as weights)."""
    shared = sorted(set(a) & set(b))
    return paired_weighted_bootstrap({i: a[i][key] for i in shared}, {i: b[i][key] for i in shared},
                                     {i: a[i]["tokens"] for i in shared})


def _nats(result: dict) -> str:
    return (f"{result['diff']:+.4f} nats (95% CI {result['ci_low']:+.4f} to {result['ci_high']:+.4f}; "
            f"{result['mean_a']:.4f} vs {result['mean_b']:.4f})")


def _greedy_or_sampled(scores: Scores, arms: list[str], samples: int) -> list[dict]:
    """For every arm scored both ways against its original on one CPU class: the standard error of
    the paired difference (pooled over the benchmarks all four evaluations share), greedy against
    sampled. Sampled decides more per generated token where (se_greedy / se_sampled)^2, the
    number of greedy tasks its one task is worth, exceeds the answers it costs per task."""
    rows = []
    for cpu in sorted(set(scores.sampled) & set(scores.greedy)):
        sampled, greedy = scores.sampled[cpu], scores.greedy[cpu]
        for arm in arms:
            original = original_of(arm)
            sides = [table.get(model, {}) for table in (sampled, greedy) for model in (arm, original)]
            shared = tuple(x for x in sides[0] if all(x in side for side in sides))
            if not shared:
                continue
            se = {mode: compare_pooled(table[arm], table[original], benchmarks=shared, names=(arm, original),
                                       test=compare_rates)["pooled"]["se"]
                  for mode, table in (("sampled", sampled), ("greedy", greedy))}
            ratio = se["greedy"] / se["sampled"] if se["sampled"] else None
            rows.append({"a": arm, "b": original, "cpu_class": cpu, "benchmarks": list(shared),
                         "se_greedy": se["greedy"], "se_sampled": se["sampled"], "se_ratio": ratio,
                         "greedy_tasks_worth": None if ratio is None else ratio ** 2,
                         "answers_per_task": scores.answers_of(cpu, arm, samples)})
    return rows


def _answers_per_task(scores: Scores, arms: list[str], config: GridV3Config) -> list[dict]:
    """For every arm scored sampled beside its original on one CPU class: the pooled paired
    difference's standard error projected to other numbers of answers per task
    (stats.samples_per_task), and the count that decides most per CPU hour on that class
    (stats.best_answer_count, with the arm's training and the engines' starts as the fixed cost
    and one more answer to each of its tasks as the cost per answer, from the class's profile):
    the figure to set --eval-samples by for the arms still to come."""
    rows = []
    for cpu, models in sorted(scores.sampled.items()):
        for arm in arms:
            original = original_of(arm)
            if arm not in models or original not in models:
                continue
            answers = scores.verdicts.get(cpu, {})
            shared = [x for x in models[arm] if x in models[original]
                      and x in answers.get(arm, {}) and x in answers.get(original, {})]
            if not shared or min(scores.answers_of(cpu, m, 0) for m in (arm, original)) < 2:
                continue
            pooled = [{f"{x}/{task}": v for x in shared for task, v in answers[m][x].items()} for m in (arm, original)]
            found = samples_per_task(*pooled)
            fixed, per_answer = _comparison_cost(config, cpu, arm, shared, found["n_tasks"])
            best = best_answer_count(found["task_variance"], found["noise_at_one"], fixed_cost=fixed,
                                     cost_per_answer=per_answer)
            now = min(found["samples"])
            cost = {n: precision_cost(found["task_variance"], found["noise_at_one"], n, fixed_cost=fixed,
                                      cost_per_answer=per_answer) for n in (now, best)}
            rows.append({"a": arm, "b": original, "cpu_class": cpu, "benchmarks": shared, **found,
                         "best_answers": best, "fixed_minutes": round(fixed, 1),
                         "minutes_per_answer": round(per_answer, 2),
                         "best_gain": 1 - cost[best] / cost[now] if cost[now] else 0.0})
    return rows


def _comparison_cost(config: GridV3Config, cpu: str, arm: str, benchmarks: list[str], tasks: int) -> tuple[float, float]:
    """(minutes before an arm's first answer: its training and an engine start per split
    evaluated, minutes of one more answer to each of its tasks), on `cpu`'s profile."""
    train = next(s for s in GridV3(config, cpu).steps() if s.name == f"train-{arm}")
    profile = load_profile(cpu)
    splits = 1 + ("mbpp_train" in benchmarks and len(benchmarks) > 1)
    fixed = estimate(config, [train], profile)[0]["minutes"] + splits * profile["engine_s"] / 60
    seconds, _ = sampled_answer_s(profile, "small" if arm.startswith("small-") else "full")
    return fixed, tasks * seconds / 60


# ---- the tables ----
def _table(scores: Scores) -> list[dict]:
    """One row per model and CPU class it was scored on."""
    def mean(rates: dict) -> float:
        return sum(rates.values()) / len(rates)

    rows = []
    for cpu in sorted({*scores.sampled, *scores.greedy}):
        sampled, greedy = scores.sampled.get(cpu, {}), scores.greedy.get(cpu, {})
        rows += [{"model": m, "cpu_class": cpu, "sampled": {b: mean(r) for b, r in sampled.get(m, {}).items()},
                  "greedy": {b: mean(r) for b, r in greedy.get(m, {}).items()},
                  "tasks": {b: len(r) for b, r in sampled.get(m, {}).items()}}
                 for m in dict.fromkeys([*sampled, *greedy])]
    return rows


def _size_speed(grid: GridV3, scores: Scores) -> list[dict]:
    """Per CPU class where `akd speed` timed the student: parameters, decode tokens/s at a fixed
    answer length, pooled sampled test pass@1 (HumanEval and MBPP test, on the same class), and
    each model's speed and accuracy as shares of the student's and the teacher's. A trained
    pruned student runs at the pruned student's speed (one architecture, one measurement)."""
    rows = []
    for cpu, folders in sorted(grid.speeds_done().items()):
        timed = {model: read_speed(folder) for model, folder in folders.items()}
        if "student" not in timed:
            continue
        models = [m for m in TIMED if m in timed]
        if "small" in timed:
            models += sorted(m for m in scores.sampled.get(cpu, {}) if m.startswith("small-"))
        accuracy = {m: _pooled_test(scores, cpu, m) for m in {*models, "teacher", "student"}}
        for model in models:
            record = timed.get(model) or timed["small"]
            rows.append({"model": model, "cpu_class": cpu, "timed_as": model if model in timed else "small",
                         "parameters": record["parameters"], "tokens_per_s": record["tokens_per_s"],
                         "fixed_length": f"{record['prompts']} prompts x {record['new_tokens']} tokens",
                         "speedup_over_student": record["tokens_per_s"] / timed["student"]["tokens_per_s"],
                         "test_pass_at_1": accuracy[model],
                         "kept_of_student": _share(accuracy[model], accuracy["student"]),
                         "kept_of_teacher": _share(accuracy[model], accuracy["teacher"])})
    return rows


def _pooled_test(scores: Scores, cpu: str, model: str) -> float | None:
    """Mean per-task pass rate over HumanEval and MBPP test together (sampled), or None."""
    rates = scores.sampled.get(cpu, {}).get(model, {})
    if not all(b in rates for b in BENCHMARKS["test"]):
        return None
    values = [v for b in BENCHMARKS["test"] for v in rates[b].values()]
    return sum(values) / len(values)


def _share(value: float | None, of: float | None) -> float | None:
    return None if value is None or not of else value / of


def _speed_text(speed: list[dict]) -> str:
    """The pruned student's accuracy kept at its decode speed-up: the best pruned model scored on
    the class where the speeds were timed."""
    small = [r for r in speed if r["timed_as"] == "small" and r["kept_of_student"] is not None]
    if not small:
        return ""
    best = max(small, key=lambda r: r["kept_of_student"])
    teacher = (f" ({100 * best['kept_of_teacher']:.0f}% of the teacher's)" if best["kept_of_teacher"] is not None
               else "")
    return (f"; at {best['speedup_over_student']:.2f}x the student's decode tokens/s (`akd speed`, "
            f"{best['fixed_length']}, {best['cpu_class']}), {best['model']} keeps "
            f"{100 * best['kept_of_student']:.0f}% of the student's pooled test pass@1{teacher}")


def _export_samples(grid: GridV3, out_dir: Path) -> dict[str, list[str]]:
    """`akd eval-export` of every evaluation done: samples/<cpu class>/<model>/<split>-<mode>/
    <benchmark>[_split].jsonl.gz, per task and sample the solution as it ran and its verdict
    (re-scorable elsewhere)."""
    from stages.evaluate.export import export_samples

    written = {}
    for (model, split, mode), folders in grid.evaluations_done().items():
        for cpu, folder in folders.items():
            name = f"{cpu}/{model}/{split}-{mode}"
            written[name] = sorted(export_samples(folder, out_dir / name)["files"])
    return dict(sorted(written.items()))


def _machines(root: Path) -> list[dict]:
    """Every finished step, in the order they finished, with the machine that ran it."""
    records = [json.loads(p.read_text()) for p in (Path(root) / "steps").glob("*.json")]
    return [{"step": r["name"], "wall_s": r.get("wall_s"),
             "machine": describe_machine(r["machine"]) if r.get("machine") else None}
            for r in sorted(records, key=lambda r: r.get("finished") or "") if r.get("status") == "done"]


def _revisions(root: Path) -> list[dict]:
    """The settings revisions the grid went through (not those it had from its start), each with
    the steps begun before it that kept their commands (study/engine/settings.py)."""
    record = _read(root / "experiment.json") or {}
    steps = [json.loads(p.read_text()) for p in sorted((root / "steps").glob("*.json"))]
    return [{**r, "begun_before": [s["name"] for s in steps if r["name"] in s.get("revision", "").split(", ")]}
            for r in record.get(REVISIONS_KEY, []) if "changes" in r]


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def markdown(report: dict) -> str:
    progress = report["progress"]
    lines = ["# Grid v3", ""]
    if progress["pending"]:
        lines += [f"Partial report: {progress['done']} of {progress['steps']} steps done; the answers marked "
                  "(open) wait for steps still pending.", ""]
    lines += [f"- **{a['question']}** {a['answer']}{' (open)' if a['open'] else ''}" for a in report["answers"]]
    for u in report["unpaired"]:
        lines.append(f"- {u['a']} (scored on {', '.join(u['a_on'])}) and {u['b']} (on {', '.join(u['b_on'])}) "
                     f"do not pair: evaluations pair only within one CPU class; waits for {u['waits_for']}.")
    if report.get("figure"):
        lines += ["", f"![the pruned student's recovery, and every run on the FKL/RKL plane]({report['figure']})"]
    lines += ["", "## Pass@1 (sampled: mean per-task rate; greedy: the headline)", "",
              "| model | CPU class | HumanEval | MBPP test | MBPP train | greedy HumanEval | greedy MBPP test |",
              "|---|---|---|---|---|---|---|"]
    for row in report["table"]:
        s, g = row["sampled"], row["greedy"]
        cells = [row["cpu_class"], _pct(s.get("humaneval")), _pct(s.get("mbpp")), _pct(s.get("mbpp_train")),
                 _pct(g.get("humaneval")), _pct(g.get("mbpp"))]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    if report.get("speed"):
        lines += ["", "## Size, accuracy and decode speed", "",
                  "Decode tokens/s from `akd speed` (every prompt answered with exactly the same number of new "
                  "tokens, greedy, one engine per model); pass@1 sampled, pooled over HumanEval and MBPP test; "
                  "speeds compare only within one CPU class.", "",
                  "| model | CPU class | parameters | tokens/s | x the student's speed | pooled test pass@1 | "
                  "of the student's | of the teacher's |", "|---|---|---|---|---|---|---|---|"]
        lines += [_speed_row(r) for r in report["speed"]]
    if report.get("power"):
        lines += ["", "## Greedy or sampled: which decides more per generated token", "",
                  "| pair | CPU class | benchmarks | SE of the difference, greedy | sampled | ratio | one sampled task "
                  "is worth (greedy tasks) | answers it costs |", "|---|---|---|---|---|---|---|---|"]
        lines += [_power_row(r) for r in report["power"]]
    if report.get("answers_per_task"):
        counts = [p["answers"] for p in report["answers_per_task"][0]["projected"]]
        lines += ["", "## Answers per task: the standard error of the pooled difference at other counts", "",
                  "Projected from the sampled pairs (binomial noise falls as 1/answers, the spread of the true "
                  "per-task differences does not); 2.8 x SE is the difference found 4 times in 5 at p < 0.05. The "
                  "last column: the count with the least variance x cost, an arm's training and engine starts "
                  "counted once and each answer to every task on top (this CPU class's profile).", "",
                  "| pair | CPU class | tasks | answers now | noise share now | "
                  + " | ".join(f"SE at {m}" for m in counts) + " | SE at infinity | most decided per CPU hour at |",
                  "|---|---|---|---|---|" + "---|" * (len(counts) + 2)]
        lines += [_answers_row(r) for r in report["answers_per_task"]]
    if report["mbpp_answers"]:
        answers = report["mbpp_answers"]
        left_out = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in sorted(answers.get("left_out", {}).items()))
        lines += ["", f"MBPP-train answers of the teacher that pass their own asserts: {answers.get('kept')} of "
                      f"{answers.get('n_tasks')}" + (f" (left out: {left_out})." if left_out else ".")]
    if report.get("revisions"):
        lines += ["", "## Settings revised while the grid ran", ""]
        lines += [f"- {r['name']} ({r['applied']}): "
                  + ", ".join(f"{k} {b} -> {a}" for k, (b, a) in r["changes"].items())
                  + f". {r['why']} Steps begun before it, run as they began: "
                  + (", ".join(r["begun_before"]) or "none") + "." for r in report["revisions"]]
    lines += ["", "## Which machine ran each step", "", "| step | machine | wall (s) |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['machine'] or '–'} | {r['wall_s'] if r['wall_s'] is not None else '–'} |"
              for r in report["machines"]]
    return "\n".join(lines) + "\n"


def _speed_row(r: dict) -> str:
    timed = r["tokens_per_s"] if r["timed_as"] == r["model"] else f"{r['tokens_per_s']} (as small)"
    kept = [_pct(r["kept_of_student"]), _pct(r["kept_of_teacher"])]
    return (f"| {r['model']} | {r['cpu_class']} | {r['parameters'] / 1e6:.0f}M | {timed} | "
            f"{r['speedup_over_student']:.2f} | {_pct(r['test_pass_at_1'])} | " + " | ".join(kept) + " |")


def _power_row(r: dict) -> str:
    ratio, worth = r["se_ratio"], r["greedy_tasks_worth"]
    return (f"| {r['a']} vs {r['b']} | {r['cpu_class']} | {', '.join(r['benchmarks'])} | "
            f"{100 * r['se_greedy']:.2f} pts | {100 * r['se_sampled']:.2f} pts | "
            f"{'–' if ratio is None else f'{ratio:.2f}'} | {'–' if worth is None else f'{worth:.1f}'} | "
            f"{r['answers_per_task']} |")


def _answers_row(r: dict) -> str:
    share = r["noise_share"]
    n_a, n_b = r["samples"]
    counts = n_a if n_a == n_b else f"{n_a} / {n_b}"
    return (f"| {r['a']} vs {r['b']} | {r['cpu_class']} | {r['n_tasks']} | {counts} | "
            f"{'–' if share is None else f'{100 * share:.0f}%'} | "
            + " | ".join(f"{100 * p['se']:.2f} pts" for p in r["projected"]) + f" | {100 * r['se_limit']:.2f} pts | "
            f"{r['best_answers']} answers (training etc. {r['fixed_minutes']:g} min, {r['minutes_per_answer']:g} min "
            f"an answer a task): {100 * r['best_gain']:.0f}% more decided per CPU hour than at {min(r['samples'])} |")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
