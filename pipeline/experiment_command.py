"""`akd experiment run | status | report | estimate`: the paper's comparisons as one resumable grid."""
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
    """The AKD experiment grid, version 2 (issue 13): template and lr chosen off the test sets,
    AKD off- and on-policy against CE, KD and RKD at a fine-tuning budget, MBPP-train answers,
    a width-pruned smaller student; paired tests over 1,038 tasks."""


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



@experiment_group.command("estimate")
@dataclass_options(ExperimentConfig)
def estimate_command(**options):
    """The expected minutes of every step on this 2-core CPU (study/cost.py), and the total."""
    from study.cost import estimate, expected_budget, total_hours
    from study.plan import build_plan

    with user_errors():
        config = ExperimentConfig(**options)
        rows = estimate(config, build_plan(config), expected_budget(config))
    for row in rows:
        click.echo(f"{row['step']:34} {row['minutes']:6.1f} min  {row['basis']}")
    click.echo(f"total {total_hours(rows):.1f} h for {len(rows)} steps")
