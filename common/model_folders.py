"""Is this a model akd can load? Checked before a model load, so a wrong path is one line.

transformers and vLLM report a missing folder, or one with a tokenizer but no config or no
weights, as a traceback several screens long (an OSError from deep inside the Hub client, or
an engine that dies in its worker). A model is named by a local folder or a Hub id; a folder
must hold what its use needs, and a Hub id must be reachable: in the local Hugging Face cache
when the Hub is offline (HF_HUB_OFFLINE=1, as the make targets run).
"""
from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "*.gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


class ModelFolderError(Exception):
    """A model named on the command line cannot be loaded: no such folder, or one that lacks files."""


def check_model(spec: str, option: str = "--model", *, weights: bool = True) -> None:
    """Raise ModelFolderError unless `spec` names a loadable model: a folder with config.json and
    weights (`weights=False`: a tokenizer is enough), or a Hub id the Hub client can serve."""
    path = Path(spec).expanduser()
    if path.is_dir():
        _check_folder(path, option, weights)
    elif path.exists():
        raise ModelFolderError(f"{option} {spec}: a file, not a model folder")
    elif _looks_local(spec):
        raise ModelFolderError(f"{option} {spec}: no such folder")
    elif _hub_offline() and not _in_hub_cache(spec):
        raise ModelFolderError(f"{option} {spec}: no such folder, and not in the local Hugging Face cache "
                               "while the Hub is offline (HF_HUB_OFFLINE=1)")


def _check_folder(path: Path, option: str, weights: bool) -> None:
    has_tokenizer = any((path / name).exists() for name in TOKENIZER_FILES)
    if not weights:
        if not has_tokenizer:
            raise ModelFolderError(f"{option} {path}: no tokenizer in this folder (none of "
                                   f"{', '.join(TOKENIZER_FILES)})")
        return
    if not (path / CONFIG_FILE).exists():
        raise ModelFolderError(f"{option} {path}: no {CONFIG_FILE} in this folder, so it is not a model"
                               f"{' (it holds a tokenizer only)' if has_tokenizer else ''}")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise ModelFolderError(f"{option} {path}: no weights in this folder (no *.safetensors, "
                               "pytorch_model*.bin or *.gguf)")


def _looks_local(spec: str) -> bool:
    """A path, not a Hub id: starts like one, has more parts than owner/name, or its first part
    is a folder here (models/foo with no models/foo in it)."""
    parts = spec.split("/")
    return (spec.startswith((".", "/", "~")) or os.sep != "/" and os.sep in spec or len(parts) > 2
            or len(parts) == 2 and Path(parts[0]).is_dir())


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, CONFIG_FILE), str)
    except Exception:  # an id the Hub client refuses to parse is not in its cache either
        return False
