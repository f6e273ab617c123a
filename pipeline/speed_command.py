"""`akd speed`: decode tokens/s at a fixed answer length, comparable across models."""
from __future__ import annotations

from pathlib import Path

import click

from common.settings import build_config, option_flag
from inference.allocator import describe as describe_allocator
from model_tools.gguf_models import resolve_model
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command
from pipeline.shared_options import MODELS_DIR_OPTION
from stages.evaluate.speed import SPEED_FILE, SpeedConfig


@akd_command("speed")
@dataclass_options(SpeedConfig)
@MODELS_DIR_OPTION
def speed_command(models_dir, **options):
    """Generated tokens/s with exactly --new-tokens per prompt (greedy, eos ignored) on the first
    --prompts HumanEval prompts, one batched generate after a warm-up: a speed that the length of
    a model's answers cannot confound (an evaluation's tokens/s can). Writes OUT/speed.json."""
    from stages.evaluate.speed import measure_speed

    click.echo(describe_allocator(), err=True)
    config = build_config(SpeedConfig, options)
    config.model = resolve_model(config.model, models_dir, option_flag(SpeedConfig, "model"))
    config.out_dir = str(config.out_dir or Path("speed") / _name(config.model))
    record = measure_speed(config)
    click.echo(f"{config.model}: {record['tokens_per_s']:.1f} tokens/s ({record['generated_tokens']} tokens "
               f"= {record['prompts']} prompts x {record['new_tokens']} in {record['seconds']:.1f} s, "
               f"{record['backend']}); {Path(config.out_dir) / SPEED_FILE}")


def _name(model: str) -> str:
    """The model folder's name; a distill run's final/ is named after its run."""
    folder = Path(model.rstrip("/"))
    return folder.parent.name if folder.name == "final" and folder.parent.name else folder.name
