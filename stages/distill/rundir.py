"""The run directory: config.json with every option and the cache's capture settings.

A run directory holds one run. Rerunning the same command resumes it; a command with
other options is refused (naming the option) unless --overwrite wipes the directory.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from cache_schema.manifest import software_versions
from common.files import atomic_write_json

from . import distributed
from .checkpoint import latest_checkpoint, remove_interrupted_saves
from .config import DistillConfig, resume_difference
from .errors import DistillConfigError

CONFIG_FILE = "config.json"


def run_slug(spec: str) -> str:
    """The folder name a student's runs get: its last path part, made file-name safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec.rstrip("/")).name)


def run_record(config: DistillConfig, manifest, student_fingerprint: str, vocab: int, world: int) -> dict:
    """What config.json holds: options, the cache's capture settings (read, never mirrored)."""
    return {
        "options": config.to_dict(),
        "loss": asdict(config.loss_config()),
        "cache": {
            "path": str(Path(config.cache_dir).resolve()),
            "teacher": manifest.identity.get("teacher"),
            "tokenizer_fingerprint": manifest.identity.get("tokenizer_fingerprint"),
            "templates": manifest.identity.get("templates"),
            "sampling": manifest.identity.get("sampling"),
            "dataset": manifest.identity.get("dataset"),
            "identity": manifest.identity,
            "k": manifest.k,
            "vocab_size": manifest.vocab_size,
            "encoding": manifest.encoding,
            "format_version": manifest.format_version,
            "rows": manifest.rows,
            "response_tokens": manifest.response_tokens,
            "shards": len(manifest.shards),
        },
        "student": {"name": config.student, "tokenizer_fingerprint": student_fingerprint, "vocab_size": vocab},
        "world_size": world,
        "global_batch": {"max_tokens": config.max_batch_tokens * world * config.grad_accum,
                         "max_examples": config.max_batch_examples * world * config.grad_accum,
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
    saved = json.loads(config_path.read_text())
    where = f"{config_path.parent}"
    diff = resume_difference(saved.get("options", {}), record["options"])
    if diff is None and saved.get("world_size") != record["world_size"]:
        diff = f"world size: the run in place used {saved.get('world_size')} processes, this one {record['world_size']}"
    if diff is None and saved.get("cache", {}).get("identity") != record["cache"]["identity"]:
        diff = "the cache: the run in place was trained on a cache with another identity"
    if diff:
        raise DistillConfigError(f"{where} holds a run with other settings ({diff}); rerun the same command "
                                 "to resume it, or pass --overwrite, or choose another --run-dir")


def _wipe(run_dir: Path) -> None:
    if not run_dir.exists():
        return
    if any(run_dir.iterdir()) and not (run_dir / CONFIG_FILE).exists():
        raise DistillConfigError(f"{run_dir} is not empty and holds no {CONFIG_FILE}: not a distill run "
                                 "directory, refusing to --overwrite it")
    shutil.rmtree(run_dir)
