"""`akd eval-export`, `akd data verified-answers` and `akd data references`: what a saved
evaluation folder turns into (re-scorable per-task samples; a verified training set), and a
benchmark's train-split references as a dataset, with nothing generated or run."""
from __future__ import annotations

import click

from common.settings import build_config
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command, akd_group
from stages.evaluate.export import SampleExportConfig, export_samples
from stages.evaluate.references import ReferenceAnswersConfig, reference_answers
from stages.evaluate.verified import VerifiedAnswersConfig, meta_path, verified_answers


@akd_command("eval-export")
@click.argument("eval_dir", metavar="EVAL_DIR", type=click.Path())
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path())
@dataclass_options(SampleExportConfig)
def eval_export_command(eval_dir, out_dir, **options):
    """Per-task verdicts of an `akd eval` folder as OUT_DIR/<benchmark>.jsonl.gz (small enough for
    git): task_id, sample, the extracted solution exactly as it ran, passed, status, reason,
    finish_reason; OUT_DIR/samples.json says how the answers were made and how to rebuild the
    program that ran (stages/evaluate/export.py), so another harness can re-score them."""
    index = export_samples(eval_dir, out_dir, build_config(SampleExportConfig, options))
    for name, entry in index["files"].items():
        rate = "n/a" if entry["pass@1"] is None else f"{100 * entry['pass@1']:.1f}%"
        click.echo(f"{out_dir}/{name}: {entry['n_tasks']} tasks, pass@1 = {rate}, "
                   f"{entry['bytes']:,} bytes")


@akd_group("data")
def data_group():
    """Training datasets built from saved evaluations."""


@data_group.command("verified-answers")
@click.argument("eval_dir", metavar="EVAL_DIR", type=click.Path())
@dataclass_options(VerifiedAnswersConfig)
def verified_answers_command(eval_dir, **options):
    """A model's MBPP-train answers that pass their task's asserts, as a CodeAlpaca-shaped
    JSON-lines dataset (instruction, input, output, task_id) for `akd teacher-cache`.

    EVAL_DIR comes from `akd eval --model M --benchmark mbpp --split train --out EVAL_DIR`.
    """
    config = build_config(VerifiedAnswersConfig, options)
    report = verified_answers(eval_dir, config)
    left_out = ", ".join(f"{n} {k}" for k, n in report["left_out"].items()) or "none"
    click.echo(f"{report['out']}: {report['kept']} of {report['n_tasks']} {report['benchmark']} "
               f"{report['split']} tasks kept (left out: {left_out}); counts in "
               f"{meta_path(report['out'])}")


@data_group.command("references")
@dataclass_options(ReferenceAnswersConfig)
def references_command(**options):
    """MBPP's train-split reference solutions as a CodeAlpaca-shaped JSON-lines dataset
    (instruction as akd eval asks it, the reference program in a python fence, task_id): score it
    with `akd teacher-cache --responses-from output`, then measure students on that cache with
    `akd distill --probe-cache`, a yardstick no teacher wrote."""
    report = reference_answers(build_config(ReferenceAnswersConfig, options))
    left_out = ", ".join(f"{n} {k}" for k, n in report["left_out"].items()) or "none"
    click.echo(f"{report['out']}: {report['kept']} of {report['n_tasks']} {report['benchmark']} "
               f"{report['split']} references (left out: {left_out}); counts in {meta_path(report['out'])}")
