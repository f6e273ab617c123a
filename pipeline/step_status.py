"""How the plan commands (`akd experiment`, `akd experiment v3`, `akd onpolicy`) run a plan and show its steps."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from common.settings import option_flag
from model_tools.gguf_models import check_model_spec


def run_plan(config, run: Callable[..., dict[str, str]], *, only: str | None) -> None:
    """Check the teacher and student the settings name (one line naming the option where a
    folder is wrong), run every step not done, print the counts; exit 1 where a step failed."""
    for role in ("teacher", "student"):
        check_model_spec(getattr(config, role), option_flag(type(config), role))
    states = run(config, only=only, echo=click.echo)
    echo_state_counts(states)
    if any(state == "failed" for state in states.values()):
        raise SystemExit(1)


def echo_step_table(root: Path, steps) -> dict[str, str]:
    """One line per step (state, name, wall time, when), then the counts; returns the states."""
    from study.engine.results import step_progress
    from study.engine.runner import read_record, step_state

    states = {s.name: step_state(root, s) for s in steps}
    for step in steps:
        record = read_record(root, step.name) or {}
        when = record.get("finished") or record.get("started") or ""
        took = f"{record['wall_s']:.0f} s" if record.get("wall_s") is not None else ""
        # an unfinished step that was started: how far it came (it resumes from there)
        far = step_progress(step.kind, step.output) if record and states[step.name] != "done" else ""
        click.echo(f"{states[step.name]:8} {step.name:48} {took:>8}  {when}" + (f"  ({far})" if far else ""))
    echo_state_counts(states)
    return states


def echo_state_counts(states: dict[str, str]) -> None:
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "running", "failed", "blocked", "pending")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(states)} steps")
