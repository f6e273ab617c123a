"""`akd experiment run | status | report | estimate`: the paper's comparisons as one resumable grid."""
from __future__ import annotations

from pathlib import Path

import click

from inference.allocator import describe as describe_allocator
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_group
from pipeline.step_status import echo_step_table, run_plan
from pipeline.settings_file_options import settings_file_options
from study.grid_v2.config import ExperimentConfig, load_config
from study.grid_v3.config import GridV3Config


@akd_group("experiment")
def experiment_group():
    """The AKD experiment grid, version 2 (issue 13): template and lr chosen off the test sets,
    AKD off- and on-policy against CE, KD and RKD at a fine-tuning budget, MBPP-train answers,
    a width-pruned smaller student; paired tests over 1,038 tasks."""


@experiment_group.command("run")
@settings_file_options(ExperimentConfig)
@dataclass_options(ExperimentConfig)
@click.option("--only", default=None, help="Run only the steps whose name contains this.")
def run_command(only, **options):
    """Run every step not done yet; rerun the same command to resume after any stop."""
    from study.grid_v2.run import run_grid

    click.echo(describe_allocator(), err=True)
    run_plan(ExperimentConfig(**options), run_grid, only=only)


_out_dir = click.option("--out-dir", default=ExperimentConfig.out_dir, show_default=True)
_keep_dir = click.option("--keep-dir", default=ExperimentConfig.keep_dir, show_default=True,
                         help="What earlier machines kept of the grid, copied into --out-dir first where "
                              "missing (empty: nothing).")


def _load(out_dir: str, keep_dir: str) -> ExperimentConfig:
    from study.grid_v2.run import restore_grid

    if keep_dir:
        restore_grid(Path(keep_dir), Path(out_dir))
    return load_config(out_dir)


@experiment_group.command("status")
@_out_dir
@_keep_dir
def status_command(out_dir, keep_dir):
    """Which steps are done, running, failed or pending."""
    from study.grid_v2.plan import build_plan

    config = _load(out_dir, keep_dir)
    echo_step_table(config.root, build_plan(config))


@experiment_group.command("report")
@_out_dir
@_keep_dir
@click.option("--results", "results_dir", default="results/experiment", show_default=True)
def report_command(out_dir, keep_dir, results_dir):
    """Tables, paired tests and plots from the steps done so far."""
    from study.grid_v2.report import build_experiment_report

    build_experiment_report(_load(out_dir, keep_dir), Path(results_dir))
    click.echo(f"report in {Path(results_dir) / 'report.md'}")


@experiment_group.command("keep")
@_out_dir
def keep_command(out_dir):
    """Copy every finished step's small outputs to the grid's keep folder (the runner does it as
    each step finishes; this serves a grid begun before that, or one still running)."""
    from study.grid_v2.run import keep_grid

    config = load_config(out_dir)
    if not config.keep_dir:
        raise click.UsageError(f"{out_dir}: the grid's keep_dir is empty: nowhere to keep it")
    copied = keep_grid(config)
    click.echo(f"{copied} files kept in {config.keep_dir}")



@experiment_group.command("estimate")
@dataclass_options(ExperimentConfig)
def estimate_command(**options):
    """The expected minutes of every step on this CPU class (study/grid_v2/cost.py), and the total."""
    from study.engine.profiles import REFERENCE_CLASS, load_profile
    from study.grid_v2.cost import estimate, expected_budget, total_hours
    from study.grid_v2.plan import build_plan

    config = ExperimentConfig(**options)
    profile = load_profile()
    click.echo(f"figures measured on {profile.cpu_class}" + (
        f"; not measured there, taken from {REFERENCE_CLASS}: {', '.join(profile.borrowed())}"
        if profile.borrowed() else ""))
    rows = estimate(config, build_plan(config), expected_budget(config), profile)
    for row in rows:
        click.echo(f"{row['step']:34} {row['minutes']:6.1f} min  {row['basis']}")
    click.echo(f"total {total_hours(rows):.1f} h for {len(rows)} steps")


@experiment_group.group("v3")
def v3_group():
    """Grid version 3 (issue 24): target-near MBPP-train data first, then the width-pruned student
    with CE, KD, RKD and AKD, then the full-size student's other losses; sampled pass@1 (several
    answers per task) decides, greedy is the headline. Resumable across stops and machines."""


@v3_group.command("run")
@settings_file_options(GridV3Config)
@dataclass_options(GridV3Config)
@click.option("--only", default=None, help="Run only the steps whose name contains this.")
def v3_run_command(only, **options):
    """Run every step of grid v3 not done yet; rerun the same command to resume after any stop."""
    from study.grid_v3.run import run_grid_v3

    click.echo(describe_allocator(), err=True)
    run_plan(GridV3Config(**options), run_grid_v3, only=only)


@v3_group.command("status")
@click.option("--out-dir", default=GridV3Config.out_dir, show_default=True)
@click.option("--keep-dir", default=GridV3Config.keep_dir, show_default=True,
              help="What earlier machines kept, copied into --out-dir first where missing (empty: nothing).")
def v3_status_command(out_dir, keep_dir):
    """Which steps of grid v3 are done, running, failed or pending on this machine's CPU class,
    and which evaluations were made on another class."""
    from study.grid_v3.config import load_config as load_v3
    from study.grid_v3.plan import GridV3, eval_name
    from study.grid_v3.run import restore_grid_v3

    if keep_dir:
        restore_grid_v3(Path(keep_dir), Path(out_dir))
    grid = GridV3(load_v3(out_dir))
    steps = grid.steps()
    echo_step_table(grid.root, steps)
    elsewhere = sorted(eval_name(*key, cpu) for key, folders in grid.evaluations_done().items()
                       for cpu in folders if cpu != grid.cpu)
    if elsewhere:
        click.echo(f"evaluated on another CPU class (this one: {grid.cpu}; pairs form within a class): "
                   + ", ".join(elsewhere))
    timed = sorted(f"speed-{model}@{cpu}" for cpu, models in grid.speeds_done().items() if cpu != grid.cpu
                   for model in models)
    if timed:
        click.echo(f"timed on another CPU class (speeds compare within a class): {', '.join(timed)}")


@v3_group.command("keep")
@click.option("--out-dir", default=GridV3Config.out_dir, show_default=True)
def v3_keep_command(out_dir):
    """Copy every finished step's small outputs of grid v3 to its keep folder, and the answers an
    unfinished evaluation has saved so far (a machine of the same CPU class resumes it from them):
    run it before committing the keep folder at a session's end."""
    from study.grid_v3.config import load_config as load_v3
    from study.grid_v3.run import keep_grid_v3

    config = load_v3(out_dir)
    if not config.keep_dir:
        raise click.UsageError(f"{out_dir}: the grid's keep_dir is empty: nowhere to keep it")
    click.echo(f"{keep_grid_v3(config)} files kept in {config.keep_dir}")


@v3_group.command("report")
@click.option("--out-dir", default=GridV3Config.out_dir, show_default=True)
@click.option("--keep-dir", default=GridV3Config.keep_dir, show_default=True,
              help="What earlier machines kept, copied into --out-dir first where missing (empty: nothing).")
@click.option("--results", "results_dir", default="results/experiment/v3", show_default=True)
def v3_report_command(out_dir, keep_dir, results_dir):
    """Grid v3's answers, its pass@1 table and which machine ran each step, from the steps done so far."""
    from study.grid_v3.config import load_config as load_v3
    from study.grid_v3.report import build_v3_report
    from study.grid_v3.run import restore_grid_v3

    if keep_dir:
        restore_grid_v3(Path(keep_dir), Path(out_dir))
    build_v3_report(load_v3(out_dir), Path(results_dir))
    click.echo(f"report in {Path(results_dir) / 'report.md'}")


@v3_group.command("estimate")
@dataclass_options(GridV3Config)
def v3_estimate_command(**options):
    """The expected minutes of every step of grid v3 on this CPU class, and the total
    (study/grid_v3/cost.py: this class's measured profile)."""
    from study.engine.profiles import REFERENCE_CLASS, load_profile
    from study.grid_v3.cost import estimate, hours_left, total_hours, with_progress
    from study.engine.settings import check_settings
    from study.grid_v3.config import CONFIG_FILE, REVISIONS
    from study.grid_v3.plan import build_plan

    config, profile = GridV3Config(**options), load_profile()
    if (config.root / CONFIG_FILE).exists():  # what is left is read from the grid there: same settings only
        check_settings(config, config.root / CONFIG_FILE, "grid", REVISIONS,
                       advice="give the options the grid ran with (its experiment.json holds them)")
    click.echo(f"figures measured on {profile.cpu_class}" + (
        f"; not measured there, taken from {REFERENCE_CLASS}: {', '.join(profile.borrowed())}"
        if profile.borrowed() else ""))
    steps = build_plan(config)
    rows = with_progress(estimate(config, steps, profile), steps, config.root)
    for row in rows:
        took = (f"  (done: took {row['took_minutes']} min on {row['ran_on']})" if row["took_minutes"] is not None
                else "  (done)" if row["state"] == "done" else "")
        click.echo(f"{row['minutes']:8.1f} min  {row['step']:44} {row['basis']}{took}")
    click.echo(f"total: {total_hours(rows):.1f} h; left (steps not done in {config.out_dir}): "
               f"{hours_left(rows):.1f} h")
