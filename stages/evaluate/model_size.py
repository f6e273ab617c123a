"""A model's parameter count, read from its safetensors headers: no weights are loaded.

The count is every tensor stored once (a tied lm_head that is not saved counts once), which
is what `sum(p.numel() for p in model.parameters())` gives for the loaded model.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from safetensors import SafetensorError, safe_open

from stages.evaluate.errors import EvaluationError

INDEX_FILE = "model.safetensors.index.json"


def parameter_count(model_dir: str | Path) -> int | None:
    """Parameters of the HF folder `model_dir`; None where it holds no safetensors weights
    (a Hub id, .bin weights)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return None
    index = folder / INDEX_FILE
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise EvaluationError(f"{index}: not a safetensors index ({exc})") from None
        files = [folder / name for name in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    shapes = {}
    for path in files:
        try:
            with safe_open(str(path), framework="numpy") as weights:
                for name in weights.keys():
                    shapes[name] = weights.get_slice(name).get_shape()
        except (SafetensorError, OSError) as exc:
            raise EvaluationError(f"{path}: cannot read its safetensors header ({exc})") from None
    return sum(math.prod(shape) for shape in shapes.values())
