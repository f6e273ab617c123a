"""`akd distill`: stage two, one run or a sweep of students x losses over one cache."""
from __future__ import annotations

import itertools
from pathlib import Path

import click

from inference.allocator import describe as describe_allocator
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import user_errors
from model_tools.gguf_models import resolve_model
from stages.distill import DistillConfig, train
from stages.distill.rundir import run_slug


@click.command("distill")
@click.option("--cache", "cache_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The teacher cache (opened read-only).")
@click.option("--student", "students", multiple=True, default=["qwen2.5-coder-0.5b-instruct"], show_default=True,
              help="Registry name, HF folder or Hub id; repeat for a sweep.")
@click.option("--loss", "losses", multiple=True, default=["akd"], show_default=True,
              help="fkl, rkl, akd, skl, srkl, jsd, tvd or ce; repeat for a sweep.")
@click.option("--models-dir", default="models", show_default=True)
@click.option("--runs-dir", default="runs", show_default=True,
              help="Each student x loss trains in RUNS_DIR/<student>-<loss>.")
@dataclass_options(DistillConfig, skip=("cache_dir", "student", "loss", "run_dir"))
def distill_command(cache_dir, students, losses, models_dir, runs_dir, **options):
    """Train students on the teacher cache (stage two). Rerun the same command to resume.

    Several --student/--loss values make a sweep over one cache.
    """
    click.echo(describe_allocator(), err=True)
    with user_errors():
        for student, loss in itertools.product(students, losses):
            target = Path(runs_dir) / f"{run_slug(student)}-{loss}"
            config = DistillConfig(cache_dir=cache_dir, student=resolve_model(student, models_dir),
                                   loss=loss, run_dir=str(target), **options)
            summary = train(config)
            click.echo(f"{student} [{loss}]: distilled student in {summary.get('final_dir')}, "
                       f"metrics and plots in {target}")
