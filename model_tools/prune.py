"""Depth pruning: a causal LM with only some of its decoder layers, saved as a normal HF folder.

(Width pruning, fewer MLP neurons in every layer, lives in model_tools/width_prune.py and
shares this module's folder handling: `check_paths` and `save_pruned`.)

Issue 5's second, smaller student is Qwen2.5-Coder-0.5B with every other layer removed.
The pruned folder must be indistinguishable from any other checkpoint: transformers and
vLLM load it, generate() with a KV cache works, and the chat template and generation
config come along. Three things have to stay consistent for that: the layer list itself,
the config's per-layer fields (`num_hidden_layers`, `layer_types`, `max_window_layers`),
and each attention module's `layer_idx`, which indexes the KV cache.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from common.files import replace_dir
from common.model_card import write_card

PROVENANCE = "akd-prune.json"
# Config lists holding one entry per decoder layer: they keep the kept layers' entries.
PER_LAYER_LISTS = ("layer_types", "no_rope_layers")


class PruneError(ValueError):
    """A pruning request the user can fix: a missing folder, bad layer indices, an existing output."""


# ---------------------------------------------------------------- which layers


def layers_to_keep(n_layers: int, keep: list[int] | None = None, every: int = 2,
                   offset: int = 0) -> list[int]:
    """The kept layer indices: `keep` checked as given, else offset, offset+every, ..."""
    if keep is None:
        if every < 1:
            raise PruneError(f"--every must be at least 1, got {every}")
        if not 0 <= offset < n_layers:
            raise PruneError(f"--offset {offset} is outside the model's layers 0-{n_layers - 1}")
        return list(range(offset, n_layers, every))
    if every != 2 or offset != 0:
        raise PruneError("--keep lists the layers itself: do not combine it with --every/--offset")
    if not keep:
        raise PruneError("--keep is empty: keep at least one layer")
    outside = [i for i in keep if not 0 <= i < n_layers]
    if outside:
        raise PruneError(f"--keep: layer {outside[0]} is outside the model's layers 0-{n_layers - 1}")
    if any(a >= b for a, b in zip(keep, keep[1:])):
        raise PruneError(f"--keep must list layers in increasing order without repeats, got {keep}")
    return list(keep)


def parse_keep(text: str) -> list[int]:
    """`"0,2,5"` -> [0, 2, 5]; an empty string is an empty list (refused later, by name)."""
    indices = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        try:
            indices.append(int(part))
        except ValueError:
            raise PruneError(f"--keep: {part!r} is not a layer index (expected e.g. \"0,2,5\")") from None
    return indices


# ---------------------------------------------------------------- pruning in memory


def decoder_layers(model):
    """The model's list of decoder layers (Llama/Qwen-style `model.model.layers`)."""
    import torch

    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise PruneError(f"{type(model).__name__} keeps no `layers` list in its decoder: "
                         "akd prune handles Llama/Qwen-style causal LMs only")
    return layers


def prune_config(config, keep: list[int]) -> None:
    """Make the config describe only the kept layers, in their new order."""
    n_layers = config.num_hidden_layers
    for name in PER_LAYER_LISTS:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)) and len(values) == n_layers:
            setattr(config, name, [values[i] for i in keep])
    # Qwen2: layers at index >= max_window_layers use the sliding window. Kept layers are in
    # increasing order, so the kept full-attention layers stay a prefix of the new stack.
    if isinstance(getattr(config, "max_window_layers", None), int):
        config.max_window_layers = sum(1 for i in keep if i < config.max_window_layers)
    config.num_hidden_layers = len(keep)


def prune_model(model, keep: list[int]):
    """Drop every decoder layer not in `keep` (in place) and renumber the rest 0, 1, ..."""
    import torch

    layers = decoder_layers(model)
    kept = [layers[i] for i in keep]
    for new_index, layer in enumerate(kept):
        for module in layer.modules():  # the attention's layer_idx picks its KV-cache slot
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    model.get_decoder().layers = torch.nn.ModuleList(kept)
    prune_config(model.config, keep)
    return model


def count_parameters(model) -> int:
    """Distinct parameters (a tied lm_head counts once)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- pruning a folder


def check_paths(source: Path, out: Path, overwrite: bool) -> None:
    if not (source / "config.json").is_file():
        raise PruneError(f"source {source} is not a model folder (no config.json there)")
    if out.resolve() == source.resolve():
        raise PruneError(f"output {out} is the source folder itself")
    if out.exists() and not overwrite:
        raise PruneError(f"output {out} already exists (pass --overwrite to replace it)")


def prune_layers(source: Path | str, out: Path | str, keep: list[int] | None = None, every: int = 2,
                 offset: int = 0, overwrite: bool = False) -> dict:
    """Write `source` (a local HF folder) with only the kept layers to `out`; returns provenance.

    `keep` lists the layers explicitly; otherwise layers offset, offset+every, ... are kept
    (default 0, 2, 4, ...). Weights keep the source's dtype.
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source, out = Path(source), Path(out)
    check_paths(source, out, overwrite)
    n_layers = getattr(AutoConfig.from_pretrained(source), "num_hidden_layers", None)
    if not isinstance(n_layers, int):
        raise PruneError(f"source {source}: its config.json has no num_hidden_layers")
    kept = layers_to_keep(n_layers, keep, every, offset)  # checked before the weights load
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(source)
    n_before = count_parameters(model)
    if len(decoder_layers(model)) != n_layers:
        raise PruneError(f"source {source}: config says {n_layers} layers, the model has "
                         f"{len(decoder_layers(model))}")
    with torch.no_grad():
        prune_model(model, kept)
    provenance = {
        "format": 1,
        "method": "depth",
        "source": str(source.resolve()),
        "source_num_layers": n_layers,
        "kept_layers": kept,
        "num_hidden_layers": len(kept),
        "parameters_before": n_before,
        "parameters_after": count_parameters(model),
        "transformers": transformers.__version__,
    }
    save_pruned(model, tokenizer, out, provenance)
    return provenance


def write_pruned_card(folder: Path, provenance: dict) -> None:
    """README.md with front matter (common/model_card.py): what the folder was pruned from and how."""
    source = Path(provenance["source"]).name  # never this machine's path
    if provenance["method"] == "depth":
        how = (f"depth pruning: kept layers {provenance['kept_layers']} of {provenance['source_num_layers']}")
    else:
        how = (f"width pruning: kept {provenance['intermediate_size']:,} of {provenance['source_intermediate_size']:,} "
               f"MLP neurons in every layer, those with the largest {provenance['importance']}")
    body = "\n".join([f"Pruned by akd from `{source}` ({how}): {provenance['parameters_before']:,} -> "
                      f"{provenance['parameters_after']:,} parameters, before any training.", "",
                      f"`{PROVENANCE}` beside this card records every setting and, for width pruning, the "
                      "calibration rows and each layer's importance kept and dropped."])
    write_card(folder, {"base_model": source, "library_name": "transformers", "pipeline_tag": "text-generation",
                        "tags": ["pruned", "code", "akd"]}, f"{source}, {provenance['method']}-pruned",
               {"pruning": body, "evaluation": "## Evaluation\n\nNot evaluated yet: `akd eval --model <this folder>` "
                                               "adds its HumanEval and MBPP pass@1 here."})


def save_pruned(model, tokenizer, out: Path, provenance: dict) -> None:
    """Write model, tokenizer and PROVENANCE to `out` through a temporary folder, atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        write_pruned_card(tmp, provenance)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
