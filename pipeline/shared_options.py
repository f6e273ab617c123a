"""Options that belong to the command line itself, not to a stage: written once here."""
from __future__ import annotations

from pathlib import Path

import click

MODELS_DIR_OPTION = click.option(
    "--models-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
    show_default=True, help="Where registry models (e.g. qwen2.5-coder-0.5b-instruct) are built: "
                            "MODELS_DIR/NAME.")
