"""Which teacher the pruned student learns from (issue 24, part 2): its unpruned parent (the
Minitron recipe) or the 1.5B, decided by a short AKD run from each on the same CodeAlpaca rows,
each teacher's own answers.

The measure is the NLL of text neither teacher wrote: MBPP train's reference programs (`akd
data references`, scored into a probe cache, `akd distill --probe-cache`). A run's own held-out
figures are against its own teacher's tokens and distributions, so they do not compare across
teachers; the probe's tokens are the same for both runs. The run whose probe NLL falls further
wins when the paired 95% interval over probe sequences (token-weighted) excludes zero;
otherwise the 1.5B stays, as the plan's default: the full-size arms learn from its cache too,
so the losses then compare across both sizes on one cache.
"""
from __future__ import annotations

from study.engine.settings import ExperimentError
from study.engine.stats import paired_weighted_bootstrap

CANDIDATES = ("parent", "teacher")  # the pruned student's unpruned parent, the grid's 1.5B
DEFAULT = "teacher"


def choose_small_teacher(runs: dict[str, dict]) -> dict:
    """runs: candidate -> {"before": probe rows at step 0, "after": probe rows at the last step
    (example id -> {"ce", "tokens"}), "tokens_seen", "steps", "model" (the teacher), "cache"}."""
    missing = [name for name in CANDIDATES if name not in runs or not runs[name]["after"]]
    if missing:
        raise ExperimentError(f"the teacher choice needs the probe figures of both short runs; none from "
                              f"{', '.join(missing)} (was the run made with --probe-cache and --heldout-per-sequence?)")
    after = {name: {i: row["ce"] for i, row in runs[name]["after"].items()} for name in CANDIDATES}
    tokens = {i: row["tokens"] for i, row in runs["teacher"]["after"].items()}
    test = paired_weighted_bootstrap(after["parent"], after["teacher"], tokens)  # parent - teacher
    separated = test["ci_high"] < 0 or test["ci_low"] > 0
    chosen = ("parent" if test["diff"] < 0 else "teacher") if separated else DEFAULT
    shared = sorted(set(after["parent"]) & set(after["teacher"]))
    summary = {name: _nll_drop(runs[name], shared) for name in CANDIDATES}
    interval = (f"parent - 1.5B {test['diff']:+.4f} nats a token, 95% CI {test['ci_low']:+.4f} to "
                f"{test['ci_high']:+.4f}, over {test['n_sequences']} reference programs")
    if separated:
        reason = (f"a short AKD run from the {_name(chosen)} brings the pruned student's NLL of MBPP train's "
                  f"reference programs lower ({interval})")
    else:
        reason = (f"neither teacher's short run brings the pruned student's NLL of MBPP train's reference "
                  f"programs significantly lower ({interval}), so the 1.5B stays, the teacher of every other arm")
    return {"chosen": chosen, "model": runs[chosen]["model"], "cache": runs[chosen]["cache"], "reason": reason,
            "parent_minus_teacher": test, "runs": summary}


def _nll_drop(run: dict, shared: list[str]) -> dict:
    """The run's token-weighted probe NLL before and after, on the sequences both runs scored,
    and the drop per million training tokens."""
    def mean(rows: dict) -> float | None:
        ids = [i for i in shared if i in rows]
        weight = sum(rows[i]["tokens"] for i in ids)
        return sum(rows[i]["ce"] * rows[i]["tokens"] for i in ids) / weight if weight else None

    before, after = mean(run["before"]), mean(run["after"])
    tokens = run["tokens_seen"]
    per_m = (before - after) / (tokens / 1e6) if before is not None and tokens else None
    return {"teacher": run["model"], "cache": run["cache"], "steps": run["steps"], "tokens_seen": tokens,
            "probe_nll_before": before, "probe_nll_after": after, "nll_drop_per_m_tokens": per_m}


def _name(candidate: str) -> str:
    return "unpruned parent" if candidate == "parent" else "1.5B"
