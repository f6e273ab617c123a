"""`akd eval` and `akd report`: pass@1 of any model, and the accuracy-loss tables."""
from __future__ import annotations

import json
from pathlib import Path

import click

from inference.allocator import describe as describe_allocator
from pipeline.errors import user_errors
from pipeline.models import resolve_model


@click.command("eval")
@click.option("--model", required=True, help="Registry name, HF folder (a distill run's final/ too) or Hub id.")
@click.option("--role", type=click.Choice(["teacher", "student", "distilled"]), default=None,
              help="Default: distilled for a distill run's folder, else student.")
@click.option("--out", "out_dir", default=None, help="Default: evals/<model folder name>.")
@click.option("--benchmark", "benchmarks", multiple=True, default=["humaneval", "mbpp"], show_default=True)
@click.option("--mode", type=click.Choice(["instruct", "completion"]), default="instruct", show_default=True)
@click.option("--backend", type=click.Choice(["vllm", "hf"]), default="vllm", show_default=True)
@click.option("--limit", default=0, show_default=True, help="Only the first N tasks (0 = all).")
@click.option("--n-samples", default=1, show_default=True, help="Samples per task (pass@k).")
@click.option("--temperature", default=0.0, show_default=True)
@click.option("--max-new-tokens", default=512, show_default=True)
@click.option("--models-dir", default="models", show_default=True)
@click.option("--data-dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Where HumanEval/MBPP live (default: the data akd ships, akd_data).")
@click.option("--split", default="test", show_default=True,
              help="MBPP split: test (11-510), validation (511-600), prompt (1-10), train, selection (1-10 + 511-600).")
@click.option("--template", default=None,
              help="Ask through this prompt template (inference/prompts.json); default: the "
                   "benchmark's words as the only user turn.")
@click.option("--templates-file", default=None, type=click.Path(dir_okay=False),
              help="Extra templates, as for teacher-cache.")
def eval_command(model, role, out_dir, benchmarks, mode, backend, limit, n_samples, temperature,
                 max_new_tokens, models_dir, data_dir, split, template, templates_file):
    """HumanEval/MBPP pass@1 (and pass@k) of one model, generations and per-task results saved."""
    from inference.templates import get_template
    from stages.evaluate import evaluate_model

    click.echo(describe_allocator(), err=True)
    with user_errors():
        prompt_template = get_template(template, templates_file) if template else None
        path = resolve_model(model, models_dir)
        meta = distill_run_meta(Path(path))
        role = role or ("distilled" if meta else "student")
        out = Path(out_dir or Path("evals") / _name(path, meta))
        summary = evaluate_model(path, out, benchmarks=benchmarks, mode=mode, backend=backend,
                                 limit=limit or None, n_samples=n_samples, temperature=temperature,
                                 max_new_tokens=max_new_tokens, role=role, meta=meta,
                                 data_dir=Path(data_dir) if data_dir else None, progress=True,
                                 split=split, template=prompt_template)
    for name in benchmarks:
        scores = summary["benchmarks"][name]
        click.echo(f"{path} {name}: pass@1 = {100 * scores['pass@1']:.1f}% ({scores['n_tasks']} tasks)")
    click.echo(f"results in {out}")


@click.command("report")
@click.option("--runs-dir", default="evals", show_default=True, help="Where `akd eval` wrote its summaries.")
@click.option("--out", "out_dir", default="results", show_default=True)
def report_command(runs_dir, out_dir):
    """Tables (Markdown, JSON) and a bar chart: pass@1, accuracy loss, its reduction."""
    from stages.evaluate import build_report

    with user_errors():
        build_report(Path(runs_dir), Path(out_dir))
    click.echo((Path(out_dir) / "report.md").read_text())


def distill_run_meta(model_dir: Path) -> dict:
    """For a distill run's final/ folder: its loss, cache and original student (else {})."""
    config_file = model_dir.parent / "config.json"
    if model_dir.name != "final" or not config_file.exists():
        return {}
    record = json.loads(config_file.read_text())
    return {"loss": record["options"]["loss"], "cache": record["cache"]["path"],
            "base_model": record["student"]["name"], "run_dir": str(model_dir.parent)}


def _name(path: str, meta: dict) -> str:
    if meta:
        return Path(meta["run_dir"]).name
    return Path(path.rstrip("/")).name.replace("/", "_")
