"""Running the on-policy rounds: every step not done yet, then the summary across rounds.

Apart from study/onpolicy.py (the settings and the plan) so that the summary, which reads
the plan, and the plan never import each other.
"""
from __future__ import annotations

from study.onpolicy.rounds import COMMAND, LOG_FILE, OnPolicyConfig, build_rounds, check_rows_fit, save_or_check_config
from study.onpolicy.summary import write_summary
from study.engine.runner import run_steps


def run_rounds(config: OnPolicyConfig, *, only: str | None = None, echo=print) -> dict[str, str]:
    """Record (or check) the settings, run every step not done, then write the summary."""
    save_or_check_config(config)
    check_rows_fit(config)
    states = run_steps(config.root, build_rounds(config), only=only, echo=echo, log_name=LOG_FILE,
                       command=COMMAND, show_output=True)
    write_summary(config)
    return states
