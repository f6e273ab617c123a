"""The grid's three choices, each made on data that is never a test task, written down with
its reason: the teacher's template (selection split), AKD's lr (held-out FKL and selection
split) and the base cache of the MBPP-train arm (MBPP train split).

Each `choose_*` is a pure function of scores (testable on canned data); `decide_*` reads the
saved evaluations and writes the choice file the later steps' commands read.
"""
from __future__ import annotations

import math

from study.grid_v2.config import PLAIN
from study.engine.settings import ExperimentError
from study.engine.stats import compare


def choose_template(passes: dict[str, dict[str, bool]], split: str) -> dict:
    """The template with the highest selection pass@1, plain included. Plain wins a tie: an
    enhanced template is used only when it beats plain; among tied enhanced templates the
    one listed first wins."""
    if PLAIN not in passes:
        raise ExperimentError(f"the template choice needs {PLAIN!r} among {sorted(passes)}")
    scores = {name: _rate(p) for name, p in passes.items()}
    enhanced = [name for name in passes if name != PLAIN]
    best_enhanced = max(enhanced, key=lambda t: (scores[t], -enhanced.index(t))) if enhanced else None
    beats = best_enhanced is not None and scores[best_enhanced] > scores[PLAIN]
    chosen = best_enhanced if beats else PLAIN
    choice = {"chosen": chosen, "split": split, "pass@1": scores, "best_enhanced": best_enhanced,
              "enhanced_beats_plain": beats}
    if best_enhanced is not None:
        choice["best_enhanced_vs_plain"] = compare(passes[best_enhanced], passes[PLAIN])
    choice["reason"] = (f"`{chosen}` has the highest teacher pass@1 on the {split} split "
                        f"({_pct(scores[chosen])}; plain {_pct(scores[PLAIN])})" if beats else
                        f"no enhanced template beats plain on the {split} split (plain "
                        f"{_pct(scores[PLAIN])}" + (f", best enhanced `{best_enhanced}` "
                                                    f"{_pct(scores[best_enhanced])}" if best_enhanced else "")
                        + "), so the grid uses plain")
    return choice


def choose_lr(runs: dict[float, dict], split: str, guard: float, student: dict[str, bool] | None = None) -> dict:
    """runs: lr -> {"passes": selection task -> passed, "heldout_fkl": final held-out FKL or None}.

    An lr whose selection pass@1 is significantly below the best lr's (McNemar p < guard) is
    out; of the rest, the lowest held-out FKL wins (the smoother signal on 100 tasks); with no
    held-out figure, the highest pass@1 (the smaller lr on a tie)."""
    lrs = sorted(runs)
    scores = {lr: _rate(runs[lr]["passes"]) for lr in lrs}
    best = max(lrs, key=lambda lr: (scores[lr], -lr))
    kept, dropped = [], {}
    for lr in lrs:
        test = compare(runs[lr]["passes"], runs[best]["passes"])
        if lr != best and test["diff"] < 0 and test["mcnemar_p_value"] < guard:
            dropped[_key(lr)] = test
        else:
            kept.append(lr)
    fkl = {lr: runs[lr].get("heldout_fkl") for lr in lrs}
    known = [lr for lr in kept if _finite(fkl[lr])]
    if known:
        chosen = min(known, key=lambda lr: (fkl[lr], lr))
        reason = (f"lr {chosen:g}: the lowest held-out FKL ({fkl[chosen]:.4f}) of the lrs whose {split} "
                  f"pass@1 is not significantly below the best one's ({_pct(scores[best])} at lr {best:g})")
    else:
        chosen = best
        reason = f"lr {chosen:g}: the highest {split} pass@1 ({_pct(scores[best])}); no held-out FKL was recorded"
    if dropped:
        reason += f"; ruled out for a significantly lower {split} pass@1: " + ", ".join(dropped)
    choice = {"chosen": chosen, "split": split, "guard_p": guard, "reason": reason,
              "pass@1": {_key(lr): scores[lr] for lr in lrs},
              "heldout_fkl": {_key(lr): fkl[lr] for lr in lrs}, "ruled_out": dropped}
    if student is not None:
        choice["student_pass@1"] = _rate(student)
        choice["chosen_vs_student"] = compare(runs[chosen]["passes"], student)
    return choice


def choose_mbpp_base(setting: str, offpolicy: dict[str, bool] | None, onpolicy: dict[str, bool] | None) -> dict:
    """offpolicy or onpolicy: given, or (auto) whichever AKD arm passed more MBPP-train tasks
    (a tie keeps off-policy). The MBPP-train arm is never scored on that split."""
    if setting != "auto":
        return {"chosen": setting, "setting": setting, "reason": f"--mbpp-base {setting}"}
    if offpolicy is None or onpolicy is None:
        raise ExperimentError("--mbpp-base auto needs both AKD arms scored on MBPP train")
    rates = {"offpolicy": _rate(offpolicy), "onpolicy": _rate(onpolicy)}
    chosen = "onpolicy" if rates["onpolicy"] > rates["offpolicy"] else "offpolicy"
    return {"chosen": chosen, "setting": setting, "mbpp_train_pass@1": rates,
            "onpolicy_vs_offpolicy": compare(onpolicy, offpolicy),
            "reason": f"{chosen}: AKD {chosen} passed more MBPP-train tasks "
                      f"({_pct(rates['onpolicy'])} on-policy vs {_pct(rates['offpolicy'])} off-policy)"
            if rates["onpolicy"] != rates["offpolicy"] else
            f"offpolicy: both AKD arms passed {_pct(rates['offpolicy'])} of MBPP train (a tie keeps off-policy)"}


def _rate(passes: dict[str, bool]) -> float:
    if not passes:
        raise ExperimentError("a choice needs at least one scored task")
    return sum(passes.values()) / len(passes)


def _key(lr: float) -> str:
    return f"{lr:g}"


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"
