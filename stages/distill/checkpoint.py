"""Checkpoints that survive kill -9: built under a temporary name, fsynced, renamed.

A checkpoint is `checkpoints/step-NNNNNNN/` holding `model/` (an HF folder: safetensors,
config, tokenizer; float32 master weights, so a resumed run continues bit for bit) and
`trainer_state.pt` (optimizer, scheduler, RNG states, data positions, step, metrics).
A folder without the `step-` name is an interrupted save and is deleted on the next start.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from common.files import replace_dir

from .errors import SaveError
from .run_folder import CHECKPOINT_MODEL_DIR, CHECKPOINTS_DIR, checkpoint_name

STATE_FILE = "trainer_state.pt"
STEP_RE = re.compile(r"^step-(\d{7})$")


def checkpoint_step(path: Path) -> int:
    return int(STEP_RE.match(path.name).group(1))


def list_checkpoints(run_dir) -> list[Path]:
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.exists():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and STEP_RE.match(p.name)), key=checkpoint_step)


def latest_checkpoint(run_dir) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def remove_interrupted_saves(run_dir) -> None:
    root = Path(run_dir) / CHECKPOINTS_DIR
    for path in root.glob(".tmp-*") if root.exists() else []:
        shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(run_dir, step: int, model, state_dict: dict, tokenizer, trainer_state: dict,
                    keep: int) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep`."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)

    def write(tmp: Path) -> None:
        save_hf_folder(model, state_dict, tokenizer, tmp / CHECKPOINT_MODEL_DIR)
        torch.save(trainer_state, tmp / STATE_FILE)

    _atomic_dir(final, write)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def save_final(out_dir, model, state_dict: dict, tokenizer, dtype: torch.dtype) -> Path:
    """The distilled model as a plain HF folder in `dtype`, replaced atomically."""
    return _atomic_dir(Path(out_dir), lambda tmp: save_hf_folder(model, state_dict, tokenizer, tmp, dtype))


def save_hf_folder(model, state_dict: dict, tokenizer, out: Path, dtype: torch.dtype | None = None) -> None:
    """save_pretrained with the given (full) state dict; tied tensors stay shared after a cast."""
    if dtype is not None:
        cast: dict[int, torch.Tensor] = {}
        state_dict = {k: cast.setdefault(v.data_ptr(), v.to(dtype)) for k, v in state_dict.items()}
    model.save_pretrained(out, state_dict=state_dict)
    tokenizer.save_pretrained(out)
    # save_pretrained records the in-memory state: float32, and use_cache off for training
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["use_cache"] = True
    if dtype is not None:
        config["dtype"] = str(dtype).removeprefix("torch.")
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_trainer_state(checkpoint: Path) -> dict:
    # our own file, holding numpy/python RNG states that weights_only cannot load
    return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_dir(final: Path, write) -> Path:
    """Build under .tmp-<name>, fsync every file, swap into place."""
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except (OSError, RuntimeError, SafetensorError) as exc:  # torch reports a full disk as RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)  # the half-written copy would only take more space
        free_gib = shutil.disk_usage(final.parent).free / 2**30
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SaveError(f"could not write {final} ({reason}); {free_gib:.1f} GiB free there. Anything saved "
                        f"before is intact: free space and rerun the same command to resume") from None
    return replace_dir(tmp, final)

