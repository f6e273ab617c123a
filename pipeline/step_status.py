"""How `akd experiment status` and `akd onpolicy status` show a plan's steps."""
from __future__ import annotations

from pathlib import Path

import click


def echo_step_table(root: Path, steps) -> dict[str, str]:
    """One line per step (state, name, wall time, when), then the counts; returns the states."""
    from study.engine.runner import read_record, step_state

    states = {s.name: step_state(root, s) for s in steps}
    for step in steps:
        record = read_record(root, step.name) or {}
        when = record.get("finished") or record.get("started") or ""
        took = f"{record['wall_s']:.0f} s" if record.get("wall_s") is not None else ""
        click.echo(f"{states[step.name]:8} {step.name:48} {took:>8}  {when}")
    echo_state_counts(states)
    return states


def echo_state_counts(states: dict[str, str]) -> None:
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "running", "failed", "blocked", "pending")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(states)} steps")
