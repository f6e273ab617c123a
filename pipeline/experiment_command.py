"""`akd experiment run | status | report`: the paper's comparisons as one resumable grid."""
from __future__ import annotations

from pathlib import Path

import click

from inference.allocator import describe as describe_allocator
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import user_errors
from pipeline.step_status import echo_state_counts, echo_step_table
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
    echo_state_counts(states)
    if any(state == "failed" for state in states.values()):
        raise SystemExit(1)


@experiment_group.command("status")
@click.option("--out-dir", default=ExperimentConfig.out_dir, show_default=True)
def status_command(out_dir):
    """Which steps are done, running, failed or pending."""
    from study.plan import build_plan

    with user_errors():
        config = load_config(out_dir)
        echo_step_table(config.root, build_plan(config))


@experiment_group.command("report")
@click.option("--out-dir", default=ExperimentConfig.out_dir, show_default=True)
@click.option("--results", "results_dir", default="results/experiment", show_default=True)
def report_command(out_dir, results_dir):
    """Tables, paired tests and plots from the steps done so far."""
    from study.report import build_experiment_report

    with user_errors():
        build_experiment_report(load_config(out_dir), Path(results_dir))
    click.echo(f"report in {Path(results_dir) / 'report.md'}")

