"""`akd eval` and `akd report`: pass@1 of any model, and the accuracy-loss tables."""
from __future__ import annotations

from pathlib import Path

import click

from common.model_card import CARD_FILE, set_section
from common.settings import build_config, option_flag
from inference.allocator import describe as describe_allocator
from model_tools.gguf_models import resolve_model
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command
from pipeline.shared_options import MODELS_DIR_OPTION
from pipeline.settings_file_options import settings_file_options
from stages.distill.run_folder import CONFIG_FILE, FINAL_DIR, mix_name, read_run_record
from stages.evaluate import EvalConfig
from stages.evaluate.card_section import evaluation_section


@akd_command("eval")
@settings_file_options(EvalConfig)
@dataclass_options(EvalConfig)
@MODELS_DIR_OPTION
def eval_command(models_dir, **options):
    """HumanEval/MBPP pass@1 (and pass@k) of one model, generations and per-task results saved."""
    from inference.templates import get_template
    from stages.evaluate import evaluate_model

    click.echo(describe_allocator(), err=True)
    config = build_config(EvalConfig, options)
    prompt_template = get_template(config.template, config.templates_file) if config.template else None
    config.model = resolve_model(config.model, models_dir, option_flag(EvalConfig, "model"))
    meta = distill_run_meta(Path(config.model))
    config.out_dir = str(config.out_dir or Path("evals") / _name(config.model, meta))
    summary = evaluate_model(config, role="distilled" if meta else "student", meta=meta,
                             template=prompt_template, progress=True)
    if Path(config.model).is_dir() and set_section(config.model, "evaluation",
                                                      evaluation_section(summary, Path(config.out_dir).parent)):
        click.echo(f"{Path(config.model) / CARD_FILE}: evaluation section updated")
    for name in config.benchmarks:
        scores = summary["benchmarks"][name]
        click.echo(f"{config.model} {name}: pass@1 = {100 * scores['pass@1']:.1f}% "
                   f"({scores['n_tasks']} tasks)")
    click.echo(f"results in {config.out_dir}")


@akd_command("report")
@click.option("--runs-dir", default="evals", show_default=True, help="Where `akd eval` wrote its summaries.")
@click.option("--out", "out_dir", default="results", show_default=True)
def report_command(runs_dir, out_dir):
    """Tables (Markdown, JSON) and a bar chart: pass@1, accuracy loss, its reduction."""
    from study.accuracy_report import build_report

    build_report(Path(runs_dir), Path(out_dir))
    click.echo((Path(out_dir) / "report.md").read_text())


def distill_run_meta(model_dir: Path) -> dict:
    """For a distill run's final/ folder: its loss, cache(s) and original student (else {})."""
    config_file = model_dir.parent / CONFIG_FILE
    if model_dir.name != FINAL_DIR or not config_file.exists():
        return {}
    record = read_run_record(config_file)  # a pre-mixing (flat) config.json too
    return {"loss": record["options"]["loss"]["kind"], "cache": mix_name(record["mix"]),
            "base_model": record["student"]["name"], "run_dir": str(model_dir.parent)}


def _name(path: str, meta: dict) -> str:
    if meta:
        return Path(meta["run_dir"]).name
    return Path(path.rstrip("/")).name.replace("/", "_")
