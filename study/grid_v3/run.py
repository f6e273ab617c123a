"""Running grid v3 through the engine (study/engine/experiment.py) with its plan and settings file."""
from __future__ import annotations

from pathlib import Path

from study.engine.experiment import keep_experiment, restore_experiment, run_experiment
from common.machine import CPU_CLASSES
from study.grid_v3.config import CONFIG_FILE, REVISIONS, GridV3Config
from study.engine.steps import Step
from study.grid_v3.plan import build_plan

COMMAND = "akd experiment v3 run"


def run_grid_v3(config: GridV3Config, *, only: str | None = None, echo=print) -> dict[str, str]:
    return run_experiment(config, build_plan, CONFIG_FILE, only=only, echo=echo, command=COMMAND,
                          revisions=REVISIONS, every_step=every_step)


def every_step(config: GridV3Config) -> list[Step]:
    """The steps of every CPU class's plan (each class evaluates the originals on its own)."""
    steps = {step.name: step for cpu in CPU_CLASSES for step in build_plan(config, cpu)}
    return list(steps.values())


def restore_grid_v3(keep_dir: Path, root: Path) -> int:
    return restore_experiment(keep_dir, root, CONFIG_FILE)


def keep_grid_v3(config: GridV3Config) -> int:
    return keep_experiment(config, build_plan, CONFIG_FILE)
