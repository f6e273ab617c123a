"""`akd distill`: stage two, one run or a sweep of students x losses over one cache (or a mix)."""
from __future__ import annotations

import itertools
from pathlib import Path

import click

from inference.allocator import describe as describe_allocator
from model_tools.gguf_models import DEFAULT_REGISTRY_STUDENT, resolve_model
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command
from pipeline.settings_file_options import settings_file_options
from pipeline.shared_options import MODELS_DIR_OPTION
from stages.distill import DistillConfig, train
from stages.distill.losses import LOSS_KINDS, LossConfig
from stages.distill.run_folder import run_path


@akd_command("distill")
@settings_file_options(DistillConfig, renames={"student": "students", "kind": "losses"})
@click.option("--student", "students", multiple=True, default=[DEFAULT_REGISTRY_STUDENT], show_default=True,
              help="Registry name, HF folder or Hub id; repeat for a sweep.")
@click.option("--loss", "losses", multiple=True, default=[LossConfig.kind], show_default=True,
              type=click.Choice(LOSS_KINDS), help="The loss; repeat for a sweep.")
@MODELS_DIR_OPTION
@click.option("--runs-dir", default="runs", show_default=True,
              help="Each student x loss trains in RUNS_DIR/<student>-<loss>.")
@click.option("--run-dir", default=None, help="The run's folder, for one student and one loss "
                                             "(default: RUNS_DIR/<student>-<loss>).")
@dataclass_options(DistillConfig, skip=("student", "kind", "run_dir"))
def distill_command(students, losses, models_dir, runs_dir, run_dir, **options):
    """Train students on teacher caches (stage two). Rerun the same command to resume.

    Several --student/--loss values make a sweep; several --cache values (with --cache-weight)
    train on a mix of caches, e.g. an on-policy cache beside the teacher's.
    """
    if run_dir and len(students) * len(losses) > 1:
        raise click.UsageError(f"--run-dir names one run's folder; this sweep has {len(students) * len(losses)} "
                               "(students x losses): give --runs-dir instead")
    click.echo(describe_allocator(), err=True)
    for student, loss in itertools.product(students, losses):
        target = Path(run_dir) if run_dir else run_path(runs_dir, student, loss)
        config = DistillConfig.from_options({**options, "student": resolve_model(student, models_dir, "--student"),
                                             "kind": loss, "run_dir": str(target)})
        summary = train(config)
        click.echo(f"{student} [{loss}]: distilled student in {summary.get('final_dir')}, "
                   f"metrics and plots in {target}")
