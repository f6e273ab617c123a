"""Running grid v2 through the engine (study/engine/experiment.py) with its plan and settings file."""
from __future__ import annotations

from pathlib import Path

from study.engine.experiment import keep_experiment, restore_experiment, run_experiment
from study.grid_v2.config import CONFIG_FILE, ExperimentConfig
from study.grid_v2.plan import build_plan


def run_grid(config: ExperimentConfig, *, only: str | None = None, echo=print) -> dict[str, str]:
    return run_experiment(config, build_plan, CONFIG_FILE, only=only, echo=echo)


def restore_grid(keep_dir: Path, root: Path) -> int:
    return restore_experiment(keep_dir, root, CONFIG_FILE)


def keep_grid(config: ExperimentConfig) -> int:
    return keep_experiment(config, build_plan, CONFIG_FILE)
