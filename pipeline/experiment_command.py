"""`akd experiment run | status | report`: the paper's comparisons as one resumable grid."""
from __future__ import annotations

from pathlib import Path

import click

from inference.allocator import describe as describe_allocator
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import user_errors
from study.config import ExperimentConfig, load_config


@click.group("experiment")
def experiment_group():
    """The AKD experiment grid (issue 5): template choice, two caches, students, scores."""


@experiment_group.command("run")
@dataclass_options(ExperimentConfig)
@click.option("--only", default=None, help="Run only the steps whose name contains this.")
def run_command(only, **options):
    """Run every step not done yet; rerun the same command to resume after any stop."""
    from study.runner import run_grid

    click.echo(describe_allocator(), err=True)
    with user_errors():
        config = ExperimentConfig(**options)
        states = run_grid(config, only=only, echo=click.echo)
    _print_states(states)
    if any(state == "failed" for state in states.values()):
        raise SystemExit(1)


@experiment_group.command("status")
@click.option("--out-dir", default=ExperimentConfig.out_dir, show_default=True)
def status_command(out_dir):
    """Which steps are done, running, failed or pending."""
    from study.plan import build_plan
    from study.runner import read_record, step_state

    with user_errors():
        config = load_config(out_dir)
        steps = build_plan(config)
        states = {s.name: step_state(config.root, s) for s in steps}
    for step in steps:
        record = read_record(config.root, step.name) or {}
        when = record.get("finished") or record.get("started") or ""
        took = f"{record['wall_s']:.0f} s" if record.get("wall_s") is not None else ""
        click.echo(f"{states[step.name]:8} {step.name:48} {took:>8}  {when}")
    _print_states(states)


@experiment_group.command("report")
@click.option("--out-dir", default=ExperimentConfig.out_dir, show_default=True)
@click.option("--results", "results_dir", default="results/experiment", show_default=True)
def report_command(out_dir, results_dir):
    """Tables, paired tests and plots from the steps done so far."""
    from study.report import build_experiment_report

    with user_errors():
        build_experiment_report(load_config(out_dir), Path(results_dir))
    click.echo(f"report in {Path(results_dir) / 'report.md'}")


def _print_states(states: dict[str, str]) -> None:
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "running", "failed", "blocked", "pending")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(states)} steps")
