"""`akd teacher-cache`: stage one from the command line."""
from __future__ import annotations

import click

from inference.allocator import describe as describe_allocator
from pipeline.errors import user_errors
from pipeline.models import resolve_model


@click.command("teacher-cache")
@click.option("--teacher", required=True, help="Registry name (built on first use), local HF folder or Hub id.")
@click.option("--models-dir", default="models", show_default=True, help="Where registry models are built.")
@click.option("--revision", default=None, help="Teacher revision (Hub ids).")
@click.option("--student-tokenizer", default=None,
              help="The student's tokenizer (name/folder/id): must map text to the same ids as the teacher's.")
@click.option("--dataset", required=True, help="Hub id, or a local .json/.jsonl/.parquet file.")
@click.option("--split", "dataset_split", default="train", show_default=True)
@click.option("--instruction-field", default="instruction", show_default=True)
@click.option("--input-field", default="input", show_default=True, help="Empty string: the data has none.")
@click.option("--output-field", default="output", show_default=True, help="Empty string: the data has none.")
@click.option("--offset", default=0, show_default=True, help="First dataset row to use.")
@click.option("--limit", default=0, show_default=True, help="Rows to use from --offset (0 = all).")
@click.option("--k", default=20, show_default=True, help="Top-k entries cached per generated token.")
@click.option("--teacher-template", default="enhanced", show_default=True)
@click.option("--student-template", default="plain", show_default=True)
@click.option("--templates-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Extra prompt templates (JSON), added to inference/prompts.json.")
@click.option("--backend", type=click.Choice(["vllm", "hf"]), default="vllm", show_default=True)
@click.option("--temperature", default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-p", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--n", "n_samples", default=1, show_default=True, help="Samples per prompt.")
@click.option("--max-new-tokens", default=512, show_default=True)
@click.option("--max-model-len", default=4096, show_default=True)
@click.option("--tensor-parallel-size", default=1, show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--num-workers", default=1, show_default=True, help="Workers filling this cache together.")
@click.option("--worker-index", default=0, show_default=True, help="This worker's index in 0..W-1.")
@click.option("--rows-per-shard", default=128, show_default=True)
@click.option("--chunk-size", default=64, show_default=True, help="Prompts per generate call.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The cache directory.")
@click.option("--overwrite", is_flag=True, help="Replace a cache made with other settings.")
def teacher_cache_command(teacher, models_dir, student_tokenizer, dataset, input_field, output_field,
                          limit, n_samples, **options):
    """Cache the teacher's top-k log-probs for every answer it writes (stage one).

    Rerunning the same command on the same --out resumes where it stopped.
    """
    from stages.teacher import TeacherCacheConfig, build_teacher_cache

    click.echo(describe_allocator(), err=True)
    with user_errors():
        config = TeacherCacheConfig(
            model=resolve_model(teacher, models_dir),
            student_tokenizer=resolve_model(student_tokenizer, models_dir) if student_tokenizer else None,
            dataset=dataset, input_field=input_field or None, output_field=output_field or None,
            limit=limit or None, n=n_samples, **options)
        build_teacher_cache(config)
