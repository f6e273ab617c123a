"""Writing the run directory: config.json with every option and the cache's capture settings
(its layout and readers: run_folder.py).

A run directory holds one run. Rerunning the same command resumes it; a command with
other options is refused (naming the option) unless --overwrite wipes the directory.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.files import atomic_write_json
from common.machine import software_versions

from . import distributed
from .checkpoint import latest_checkpoint, remove_interrupted_saves
from .config import DistillConfig, resume_difference
from .errors import DistillConfigError
from .mixing import CacheMix
from .run_folder import CONFIG_FILE, RECORD_LAYOUT, upgrade_record


def run_record(config: DistillConfig, mix: CacheMix, student_fingerprint: str, vocab: int, world: int,
               precision: str) -> dict:
    """What config.json holds: the options (nested: loss.*, batching.*), the cache mix with
    each cache's capture settings (read from its manifest, never mirrored into options), and
    the matmul precision `--precision` came to on this machine."""
    return {
        "layout": RECORD_LAYOUT,
        "options": config.to_dict(),
        "mix": mix.record(),
        "student": {"name": config.student, "tokenizer_fingerprint": student_fingerprint, "vocab_size": vocab},
        "world_size": world,
        "precision": precision,
        "global_batch": {"max_tokens": config.batching.max_batch_tokens * world * config.grad_accum,
                         "max_examples": config.batching.max_batch_examples * world * config.grad_accum,
                         "per_rank_micro_batches": config.grad_accum},
        "software": software_versions(),
    }


def prepare_run_dir(config: DistillConfig, record: dict, env) -> Path | None:
    """Create or check the run directory; returns the checkpoint to resume from, if any."""
    run_dir = config.run_path
    if env.is_main:
        if config.overwrite:
            _wipe(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_interrupted_saves(run_dir)
    distributed.barrier(env)
    checkpoint = latest_checkpoint(run_dir)
    config_path = run_dir / CONFIG_FILE
    if checkpoint is not None and config_path.exists():
        _check_same_run(config_path, record)
    distributed.barrier(env)
    if env.is_main:
        atomic_write_json(config_path, record, default=str)
    distributed.barrier(env)
    return checkpoint


def _check_same_run(config_path: Path, record: dict) -> None:
    raw = json.loads(config_path.read_text())
    saved = upgrade_record(raw)
    where = f"{config_path.parent}"
    diff = resume_difference(saved.get("options", {}), record["options"])
    if diff is None and saved.get("world_size") != record["world_size"]:
        diff = f"world size: the run in place used {saved.get('world_size')} processes, this one {record['world_size']}"
    if diff is None:
        diff = _cache_difference(saved.get("mix") or {}, record["mix"])
    if diff is None and raw.get("layout", 1) < RECORD_LAYOUT:
        raise DistillConfigError(f"{where} holds a run begun before cache mixing (flat config.json, layout 1): "
                                 "its checkpoint's data position cannot be continued by this version; pass "
                                 "--overwrite to start it again, or choose another --runs-dir")
    if diff:
        raise DistillConfigError(f"{where} holds a run with other settings ({diff}); rerun the same command "
                                 "to resume it, or pass --overwrite, or choose another --runs-dir")


def _cache_difference(saved: dict, current: dict) -> str | None:
    """A cache whose contents changed since the run began (same path, another identity)."""
    before = [c.get("identity") for c in saved.get("caches", [])]
    for i, cache in enumerate(current["caches"]):
        if i >= len(before) or before[i] != cache["identity"]:
            return f"cache {cache['path']}: the run in place was trained on a cache with another identity"
    return None


def _wipe(run_dir: Path) -> None:
    if not run_dir.exists():
        return
    if any(run_dir.iterdir()) and not (run_dir / CONFIG_FILE).exists():
        raise DistillConfigError(f"{run_dir} is not empty and holds no {CONFIG_FILE}: not a distill run "
                                 "directory, refusing to --overwrite it")
    shutil.rmtree(run_dir)
