"""Running grid v2: what an earlier machine kept copied back, the settings recorded (or checked
against the kept ones), a warning where bf16 is emulated, then the engine runs the plan."""
from __future__ import annotations

from pathlib import Path

from common.machine import bf16_is_native, machine_facts
from common.machine import describe as describe_machine
from study.engine.keep import keep, restore
from study.engine.runner import kept_paths, log_line, root_lock, run_steps, step_state
from study.engine.settings import ExperimentError
from study.grid_v2.config import CONFIG_FILE, ExperimentConfig, save_or_check_config
from study.grid_v2.plan import build_plan


def run_grid(config: ExperimentConfig, *, only: str | None = None, echo=print) -> dict[str, str]:
    """The experiment grid: what an earlier machine kept copied back, its settings recorded (or
    checked against the kept ones), then its steps run."""
    keep_dir = Path(config.keep_dir) if config.keep_dir else None
    if keep_dir is not None and (restored := restore_grid(keep_dir, config.root)):
        log_line(config.root, echo, f"restored {restored} kept files from {keep_dir}")
    save_or_check_config(config)
    if keep_dir is not None:
        keep(config.root, keep_dir, [config.root / CONFIG_FILE])
    if not bf16_is_native(facts := machine_facts()):
        log_line(config.root, echo, f"warning: this CPU, {describe_machine(facts)}, has neither AVX-512 BF16 nor AMX: "
                                "evaluation and training run in float32 (bf16 would be emulated), several "
                                "times slower than `akd experiment estimate` says")
    return run_steps(config.root, build_plan(config), only=only, echo=echo, keep_dir=keep_dir)


def restore_grid(keep_dir: Path, root: Path) -> int:
    """Copy back what earlier machines kept of the grid at `root` (study/keep.py), only where the
    grid is not here yet (a fresh clone): a grid folder in use is the truth, and an output
    deleted from it on purpose must not come back. Its settings file is copied last, so a
    restore cut short is finished by the next. Returns how many files were copied."""
    if not Path(keep_dir).is_dir() or (Path(root) / CONFIG_FILE).exists():
        return 0
    try:
        with root_lock(Path(root)):
            return restore(keep_dir, root, last=CONFIG_FILE)
    except ExperimentError:  # a runner works there
        return 0


def keep_grid(config: ExperimentConfig) -> int:
    """Keep every finished step of a grid (one run before keeping began, or one still running);
    returns how many files were copied."""
    keep_dir = Path(config.keep_dir)
    copied = keep(config.root, keep_dir, [config.root / CONFIG_FILE])
    for step in build_plan(config):
        if step_state(config.root, step) == "done":
            copied += keep(config.root, keep_dir, kept_paths(config.root, step))
    return copied
