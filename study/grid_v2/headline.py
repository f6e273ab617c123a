"""The report's first lines: the five questions issue 13 asks, answered from the data alone.

Every answer comes from paired tests over the tasks two models share (study/engine/stats.py:
per benchmark and pooled; McNemar's exact p decides, the bootstrap gives the interval). A
question that asks about several comparisons at once ("does any arm beat the student?")
decides on Holm-adjusted p over them, and says so where an arm is significant only alone.
Where the answer is no, it says no; where the grid has not scored what a question needs,
the question is marked open and names what it waits for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from study.engine.stats import compare_pooled, holm

ALPHA = 0.05
TEST = ("humaneval", "mbpp")  # the accuracy-loss benchmarks (docs/design.md)
NAMES = {"akd": "AKD (off-policy)", "akd-onpolicy": "AKD on-policy", "ce": "CE", "fkl": "KD (FKL)",
         "rkl": "RKD (RKL)", "akd-mixed": "AKD on+off-policy", "akd-mbpp": "AKD + MBPP-train answers",
         "small": "the pruned student before training"}


@dataclass
class Scored:
    """One evaluated model: benchmark ("humaneval", "mbpp", "mbpp_train") -> task -> passed."""

    passes: dict[str, dict[str, bool]]
    parameters: int | None = None
    tokens_per_s: float | None = None  # the test evaluation's: confounded by answer length
    pass_at_1: dict[str, float] = field(default_factory=dict)  # from the summaries, per benchmark
    # `akd speed`: decode tokens/s at a fixed answer length, the honest speed figure
    fixed_tokens_per_s: float | None = None
    fixed_length: str | None = None  # e.g. "64 prompts x 256 tokens"
    speed_from: str | None = None  # the model measured (a trained small student: the pruned one)
    speed_machine: str | None = None  # where `akd speed` measured it (speeds compare on one machine only)


def first_lines(models: dict[str, Scored], full_arms: list[str], small_arms: list[str]) -> list[dict]:
    """[{"question", "answer", "open"}] for the five questions, in the issue's order."""
    return [_beats_original(models, full_arms), _onpolicy(models), _akd_vs_kd(models),
            _gap_closed(models, full_arms), _smaller(models, small_arms)]


def markdown(answers: list[dict]) -> list[str]:
    lines = [f"- **{a['question']}** {a['answer']}" for a in answers]
    still = [a["question"] for a in answers if a["open"]]
    if still:
        lines += ["", f"Still open ({len(still)} of {len(answers)}): the grid has not scored what they need yet."]
    return lines + [""]


LOSSES = {"akd": "AKD", "fkl": "KD (FKL)", "rkl": "RKD (RKL)", "ce": "CE"}


def name(model: str) -> str:
    if model.startswith("small-"):
        loss = model.removeprefix("small-")
        return f"the pruned student trained with {LOSSES.get(loss, loss)}"
    return NAMES.get(model, model)


def pooled(models: dict[str, Scored], a: str, b: str, benchmarks=None) -> dict:
    return compare_pooled(models[a].passes, models[b].passes, benchmarks=benchmarks, names=(a, b))


def diff_text(test: dict) -> str:
    return (f"{100 * test['diff']:+.1f} pts [{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}], "
            f"p={test['mcnemar_p_value']:.2g}, {test['n_tasks']:,} tasks")


def power_text(test: dict) -> str:
    """What a non-significant test could have seen: the true difference it finds 4 times in 5."""
    d = test.get("detectable_diff")
    if d is None:
        return "too few tasks differ between the two for the test to find any difference"
    return f"a true difference of {100 * d:.1f} pts would have been found 4 times in 5"


def _significant(test: dict) -> bool:
    return test["mcnemar_p_value"] < ALPHA


def _family(size: int, what: str) -> str:
    return f"Holm-adjusted over the {size} {what}"


def _adjusted(p: float, family: str) -> str:
    """An adjusted p worth printing: a family of one is its own p."""
    return f"; {family}: p={p:.2g}" if not family.startswith("Holm-adjusted over the 1 ") else ""


def _not_significant(test: dict, adjusted: float, family: str) -> str:
    if _significant(test):
        return f" (significant alone, but {family} p={adjusted:.2g})"
    return f" ({power_text(test)})"


def _open(question: str, missing: list[str]) -> dict:
    return {"question": question, "open": True,
            "answer": f"Open: waits for {', '.join(missing)} to be scored."}


def _beats_original(models, full_arms) -> dict:
    question = "Does any distilled student beat the original significantly (pooled p < 0.05)?"
    scored = [arm for arm in full_arms if arm in models]
    if "student" not in models or not scored:
        return _open(question, ([] if "student" in models else ["the original student"])
                     + ([] if scored else ["a distilled student"]))
    tests = {arm: pooled(models, arm, "student")["pooled"] for arm in scored}
    adjusted = holm({arm: tests[arm]["mcnemar_p_value"] for arm in scored})
    family = _family(len(scored), "arms scored")
    wins = [arm for arm in scored if tests[arm]["diff"] > 0 and adjusted[arm] < ALPHA]
    alone = [arm for arm in scored if tests[arm]["diff"] > 0 and _significant(tests[arm]) and arm not in wins]
    losses = [arm for arm in scored if tests[arm]["diff"] < 0 and adjusted[arm] < ALPHA]
    if wins:
        answer = "**Yes.** " + "; ".join(f"{name(a)} beats it by {diff_text(tests[a])}{_adjusted(adjusted[a], family)}"
                                         for a in wins) + "."
    elif alone:
        answer = (f"**Not after correcting for {len(scored)} comparisons.** " + "; ".join(
            f"{name(a)} beats it by {diff_text(tests[a])}, but {family} p={adjusted[a]:.2g}" for a in alone) + ".")
    else:
        best = max(scored, key=lambda a: tests[a]["diff"])
        answer = (f"**No.** No distilled student differs significantly upwards; the closest is {name(best)}: "
                  f"{diff_text(tests[best])} ({power_text(tests[best])}).")
    if losses:
        answer += " Significantly worse: " + "; ".join(f"{name(a)} ({diff_text(tests[a])}"
                                                       f"{_adjusted(adjusted[a], family)})" for a in losses) + "."
    pending = [a for a in full_arms if a not in models]
    if pending:
        answer += f" Not yet scored: {', '.join(name(a) for a in pending)}."
    return {"question": question, "answer": answer, "open": False}


def _onpolicy(models) -> dict:
    question = "By how much does on-policy distillation change the answer?"
    if not {"akd", "akd-onpolicy"} <= set(models):
        return _open(question, [name(m) for m in ("akd", "akd-onpolicy") if m not in models])
    test = pooled(models, "akd-onpolicy", "akd")["pooled"]
    verdict = "a significant change" if _significant(test) else f"not a significant change; {power_text(test)}"
    answer = f"AKD on-policy minus AKD off-policy: {diff_text(test)} ({verdict})."
    if "student" in models:
        vs = pooled(models, "akd-onpolicy", "student")["pooled"]
        answer += f" Against the original student: {diff_text(vs)}."
    if "akd-mixed" in models:
        mixed = pooled(models, "akd-mixed", "akd")["pooled"]
        answer += f" Mixed on+off-policy minus off-policy: {diff_text(mixed)}."
    return {"question": question, "answer": answer, "open": False}


def _akd_vs_kd(models) -> dict:
    question = "Does AKD beat KD and RKD, and with what interval?"
    others = [m for m in ("fkl", "rkl") if m in models]
    if "akd" not in models or not others:
        return _open(question, [name(m) for m in ("akd", "fkl", "rkl") if m not in models])
    tests = {m: pooled(models, "akd", m)["pooled"] for m in others}
    adjusted = holm({m: tests[m]["mcnemar_p_value"] for m in others})
    family = _family(len(others), "losses")
    wins = [m for m in others if tests[m]["diff"] > 0 and adjusted[m] < ALPHA]
    verdict = ("**Yes.**" if len(wins) == 2 else "**Partly.**" if wins else "**No.**")
    answer = f"{verdict} " + "; ".join(
        f"AKD minus {name(m)}: {diff_text(tests[m])}" + (_adjusted(adjusted[m], family) if m in wins else
                                                         _not_significant(tests[m], adjusted[m], family))
        for m in others) + "."
    if len(others) < 2:
        answer += f" {name(({'fkl', 'rkl'} - set(others)).pop())} is not scored yet."
    return {"question": question, "answer": answer, "open": False}


def accuracy_loss(models, model: str) -> float | None:
    """Mean over HumanEval and MBPP test of (teacher - model) / teacher (docs/design.md)."""
    teacher, scores = models["teacher"], models[model]
    losses = []
    for bench in TEST:
        t, m = _rate(teacher, bench), _rate(scores, bench)
        if t is None or m is None or t == 0:
            return None
        losses.append((t - m) / t)
    return sum(losses) / len(losses)


def _gap_closed(models, full_arms) -> dict:
    question = "What fraction of the teacher-student gap did the best method close?"
    scored = [a for a in full_arms if a in models and all(b in models[a].passes for b in TEST)]
    ready = [m for m in ("teacher", "student") if m in models and all(b in models[m].passes for b in TEST)]
    if len(ready) < 2 or not scored:
        return _open(question, [m for m in ("teacher", "student") if m not in ready]
                     + ([] if scored else ["a distilled student"]))
    before = accuracy_loss(models, "student")
    losses = {a: accuracy_loss(models, a) for a in scored}
    if before is None or any(v is None for v in losses.values()):
        return {"question": question, "open": False,
                "answer": "Undefined: the teacher passes no task of HumanEval or MBPP test."}
    best = min(scored, key=lambda a: losses[a])
    test = pooled(models, best, "student", benchmarks=list(TEST))["pooled"]
    sig = "significant" if _significant(test) else "not significant"
    if before <= 0:
        answer = f"No gap to close: the original student's accuracy loss is {_pct(before)}."
    elif losses[best] >= before:
        answer = (f"**None.** No method lowered the accuracy loss: the best, {name(best)}, has "
                  f"{_pct(losses[best])} against the original's {_pct(before)} (mean of HumanEval and MBPP test).")
    else:
        answer = (f"The best method, {name(best)}, closed {_pct((before - losses[best]) / before)} of the gap: "
                  f"accuracy loss {_pct(before)} -> {_pct(losses[best])} (mean of HumanEval and MBPP test; "
                  f"its difference from the original on those tasks is {sig}: {diff_text(test)}).")
    return {"question": question, "answer": answer, "open": False}


def _smaller(models, small_arms) -> dict:
    question = "How much of its accuracy does the smaller student keep, at what speed-up?"
    candidates = [a for a in small_arms if a in models and all(b in models[a].passes for b in TEST)]
    if "student" not in models or not candidates:
        missing = [m for m in ("student",) if m not in models] + ([] if candidates else ["the smaller student"])
        return _open(question, missing)
    rate = {m: _pooled_rate(models[m]) for m in ["student", *candidates]}
    best = max(candidates, key=lambda m: (rate[m], m != "small"))
    student, small = models["student"], models[best]
    kept = rate[best] / rate["student"] if rate["student"] else None
    answer = (f"{name(best)[0].upper()}{name(best)[1:]} keeps {_pct(kept)} of the original's pass@1 ({_pct(rate[best])} vs "
              f"{_pct(rate['student'])}, HumanEval + MBPP test)")
    if small.parameters and student.parameters:
        answer += f" with {_millions(small.parameters)} of its {_millions(student.parameters)} parameters"
    if small.fixed_tokens_per_s and student.fixed_tokens_per_s:
        same = "; the pruned student's measurement, same architecture" if small.speed_from != best else ""
        answer += (f", at {small.fixed_tokens_per_s / student.fixed_tokens_per_s:.2f}x its decode speed "
                   f"({small.fixed_tokens_per_s:.0f} vs {student.fixed_tokens_per_s:.0f} tokens/s at a fixed "
                   f"length, {small.fixed_length}{same})")
    elif small.tokens_per_s and student.tokens_per_s:
        answer += (f", at {small.tokens_per_s / student.tokens_per_s:.2f}x its generation speed "
                   f"({small.tokens_per_s:.0f} vs {student.tokens_per_s:.0f} tokens/s in the evaluation, a "
                   "figure confounded by answer length: the fixed-length measurement has not run yet)")
    else:
        answer += "; its speed-up is not measured yet"
    if best != "small" and "small" in models and rate["student"]:
        answer += f"; before training it kept {_pct(_pooled_rate(models['small']) / rate['student'])}"
    return {"question": question, "answer": answer + ".", "open": False}


def _rate(scored: Scored, bench: str) -> float | None:
    passes = scored.passes.get(bench)
    return sum(passes.values()) / len(passes) if passes else None


def _pooled_rate(scored: Scored) -> float:
    tasks = [ok for bench in TEST for ok in scored.passes[bench].values()]
    return sum(tasks) / len(tasks)


def _millions(value: int) -> str:
    return f"{value / 1e6:.0f}M" if value >= 1e7 else f"{value / 1e6:.2f}M"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
