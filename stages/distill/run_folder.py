"""A distillation run's folder: the contract between stage two and everything that reads a run
(the CLI, the study, reports), as cache_schema is between the stages.

    <runs dir>/<student slug>-<loss>/     run_path(): the folder `akd distill` trains in
      config.json          the run record: options, cache mix, student, world, precision, software
      metrics.jsonl        one JSON object per logged or evaluated step
      summary.json         written when the run ends (steps, final metrics, final/)
      checkpoints/step-NNNNNNN/model/      the latest checkpoints (HF folder + trainer state)
      final/               the distilled HF folder (transformers and vLLM load it)
      heldout/step-NNNNNNN.rank-R.jsonl   with --heldout-per-sequence: each held-out sequence's
                           cache (probe-<folder> for a --probe-cache), example id, tokens, fkl, rkl,
                           top1_agreement, ce (means over its tokens)
      *.png                plots of metrics.jsonl

Readers read through this module, never by file names of their own; a record written by an
older akd (flat options, one cache, `bf16`) is brought to today's layout here.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from common.files import atomic_write

from .config import nested_location

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_MODEL_DIR = "model"  # inside a checkpoint: its HF folder
FINAL_DIR = "final"
HELDOUT_DIR = "heldout"
PROBE_PREFIX = "probe-"  # the cache label of a --probe-cache's rows and metrics: probe-<folder>
WEIGHT_DIRS = (FINAL_DIR, CHECKPOINTS_DIR)  # the run's model folders (big, rebuilt by training)
RECORD_LAYOUT = 2  # 2: nested options and a cache mix; 1 (no `layout` key): flat options, one cache


def run_slug(spec: str) -> str:
    """The folder name a student's runs get: its last path part, made file-name safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec.rstrip("/")).name)


def run_path(runs_dir: Path | str, student: str, loss: str) -> Path:
    """Where `akd distill --runs-dir RUNS_DIR --student S --loss L` trains."""
    return Path(runs_dir) / f"{run_slug(student)}-{loss}"


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def checkpoint_model(run_dir: Path | str, step: int) -> Path:
    """The HF folder of the run's checkpoint at `step` (while it is kept)."""
    return Path(run_dir) / CHECKPOINTS_DIR / checkpoint_name(step) / CHECKPOINT_MODEL_DIR


def read_run_record(path: Path | str) -> dict:
    """A run's config.json (path of the file, or of its run folder), an older one in today's layout."""
    path = Path(path)
    return upgrade_record(json.loads((path / CONFIG_FILE if path.is_dir() else path).read_text()))


def read_metrics(run_dir: Path | str) -> list[dict]:
    """metrics.jsonl in order; [] where the run has logged nothing yet."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_summary(run_dir: Path | str) -> dict | None:
    """summary.json, or None where the run has not ended."""
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def mix_name(mix: dict) -> str:
    """What a report calls a run's data: the cache's path, or each cache's with its share."""
    caches = mix["caches"]
    if len(caches) == 1:
        return caches[0]["path"]
    return " + ".join(f"{c['path']} ({c['probability']:.2f})" for c in caches)


def upgrade_record(record: dict) -> dict:
    """The flat layout (one `cache`, loss options beside the others, `loss` stored twice) in
    today's nested one: options.loss.*, options.batching.*, options.caches, mix.caches; a run
    from before --precision (`bf16`: true or false) as the precision it trained in."""
    options = record.get("options", {})
    if "bf16" in options:
        precision = "bf16" if options["bf16"] else "float32"
        record = {**record, "options": {k: v for k, v in options.items() if k != "bf16"} | {"precision": precision}}
    if record.get("layout", 1) >= RECORD_LAYOUT:
        return record
    flat = dict(record.get("options", {}))
    renamed = {"loss": "kind", "loss_chunk_size": "chunk_size"}
    options: dict = {}
    where = nested_location()
    for key, value in flat.items():
        if key == "cache_dir":
            options["caches"], options["cache_weights"] = [value], []
            continue
        dotted = where.get(renamed.get(key, key), key)
        outer, _, inner = dotted.rpartition(".")
        (options.setdefault(outer, {}) if outer else options)[inner] = value
    if isinstance(record.get("loss"), dict) and "eps" in record["loss"]:
        options.setdefault("loss", {})["eps"] = record["loss"]["eps"]
    upgraded = {k: v for k, v in record.items() if k not in ("options", "loss", "cache")}
    cache = record.get("cache")
    mix = {"sampling": "sizes", "k": cache.get("k"),
           "caches": [{**cache, "label": Path(cache.get("path", "")).name, "probability": 1.0}]} if cache else None
    return {**upgraded, "layout": RECORD_LAYOUT, "options": options, "mix": mix}


def write_heldout_sequences(run_dir: Path | str, step: int, rank: int, rows: list[dict]) -> None:
    folder = Path(run_dir) / HELDOUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / f"{checkpoint_name(step)}.rank-{rank}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


def read_heldout_sequences(run_dir: Path | str, step: int | None = None) -> dict[str, dict]:
    """{"<cache>/<example id>": row} of every rank at `step` (default: the last step written);
    {} where the run wrote none."""
    folder = Path(run_dir) / HELDOUT_DIR
    files = sorted(folder.glob("step-*.rank-*.jsonl")) if folder.is_dir() else []
    if not files:
        return {}
    wanted = checkpoint_name(step) if step is not None else max(f.name.split(".")[0] for f in files)
    rows = {}
    for path in files:
        if path.name.split(".")[0] == wanted:
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[f"{row['cache']}/{row['example_id']}"] = row
    return rows
