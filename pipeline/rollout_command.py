"""`akd rollout`: a model answers the stage-one prompts into a responses file for score mode."""
from __future__ import annotations

import click

from pipeline.dataclass_options import dataclass_options
from pipeline.errors import user_errors
from pipeline.models import resolve_model
from stages.teacher import RolloutConfig, run_rollout

HELPS = {
    "out": "The responses directory (read by `akd teacher-cache --responses-from`).",
    "template": "Prompt template the model answers under; score with the same --student-template.",
    "n": "Samples per prompt.",
    "temperature": "0 = greedy.",
    "input_field": "Empty string: the data has none.",
    "chunk_size": "Prompts per generate call (the resume granularity).",
}


@click.command("rollout")
@click.option("--model", required=True, help="Registry name (built on first use), local HF folder or Hub id.")
@click.option("--models-dir", default="models", show_default=True, help="Where registry models are built.")
@click.option("--dataset", required=True, help="Hub id, or a local .json/.jsonl/.parquet file.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help=HELPS["out"])
@click.option("--limit", default=0, show_default=True, help="Rows to use from --offset (0 = all).")
@dataclass_options(RolloutConfig, skip=("model", "dataset", "out", "limit"), helps=HELPS)
def rollout_command(model, models_dir, limit, input_field, **options):
    """Have a model answer the training prompts (n samples each) into a responses file.

    The teacher then scores those answers in a separate run:
    `akd teacher-cache --responses-from OUT ...`. Rerunning the same command resumes.
    """
    with user_errors():
        config = RolloutConfig(model=resolve_model(model, models_dir), limit=limit or None,
                               input_field=input_field or None, **options)
        run_rollout(config)
