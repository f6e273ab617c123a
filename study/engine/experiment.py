"""Running an experiment's plan across machines: what an earlier machine kept copied back, the
settings recorded (or checked against the kept ones), a warning where bf16 is emulated, then the
steps. Any definition (grid v2, grid v3) runs through here with its own plan and settings file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from common.machine import bf16_is_native, machine_facts
from common.machine import describe as describe_machine
from study.engine.keep import forget_partial_answers, keep, restore
from study.engine.runner import carry_over, kept_paths, log_line, root_lock, run_steps, step_state
from study.engine.settings import ExperimentError, check_settings, save_settings
from study.engine.steps import Step


def run_experiment(config, plan: Callable[[object], list[Step]], config_file: str, *, only: str | None = None,
                   echo=print, command: str = "akd experiment run", revisions=(),
                   every_step: Callable[[object], list[Step]] | None = None) -> dict[str, str]:
    """`config`: frozen settings with `out_dir` (its `root`) and `keep_dir`; `plan(config)`: its
    steps on this machine; `revisions`: the definition's settings revisions (study/engine/settings.py);
    `every_step(config)`: its steps on every machine (default: `plan`), those a revision may carry over."""
    root = Path(config.out_dir)
    keep_dir = Path(config.keep_dir) if config.keep_dir else None
    if keep_dir is not None and (restored := restore_experiment(keep_dir, root, config_file)):
        log_line(root, echo, f"restored {restored} kept files from {keep_dir}")
    revised = check_settings(config, root / config_file, revisions=revisions)
    if revised is not None:
        _revise(root, revised, every_step or plan, config, keep_dir, echo)
    save_settings(config, root / config_file, revised, revisions)
    if keep_dir is not None:
        keep(root, keep_dir, [root / config_file])
    if not bf16_is_native(facts := machine_facts()):
        log_line(root, echo, f"warning: this CPU, {describe_machine(facts)}, has neither AVX-512 BF16 nor AMX: "
                             "evaluation and training run in float32 (bf16 would be emulated), several "
                             "times slower than on a CPU that computes bf16")
    return run_steps(root, plan(config), only=only, echo=echo, keep_dir=keep_dir, command=command)


def _revise(root: Path, revised, every_step, config, keep_dir: Path | None, echo) -> None:
    """Carry over the steps begun before the revision (their records first: a stop between the
    two leaves the old settings recorded, and the next run revises again)."""
    with root_lock(root):
        carried = carry_over(root, every_step(revised.before), every_step(config),
                             ", ".join(r["name"] for r in revised.applied))
    log_line(root, echo, f"settings revised ({revised.describe()}); "
                         + (f"{len(carried)} steps begun before keep their commands: {', '.join(carried)}"
                            if carried else "no step had begun that it changes"))
    if keep_dir is not None and carried:
        keep(root, keep_dir, [root / "steps" / f"{name}.json" for name in carried])


def restore_experiment(keep_dir: Path, root: Path, config_file: str) -> int:
    """Copy back what earlier machines kept of the experiment at `root` (study/engine/keep.py),
    only where it is not here yet (a fresh clone): a folder in use is the truth, and an output
    deleted from it on purpose must not come back. Its settings file is copied last, so a
    restore cut short is finished by the next. Returns how many files were copied."""
    if not Path(keep_dir).is_dir() or (Path(root) / config_file).exists():
        return 0
    try:
        with root_lock(Path(root)):
            return restore(keep_dir, root, last=config_file)
    except ExperimentError:  # a runner works there
        return 0


def keep_experiment(config, plan: Callable[[object], list[Step]], config_file: str) -> int:
    """Keep every finished step (of a run from before keeping began, or one still running), and
    the answers an unfinished evaluation has saved so far (a machine of the same CPU class
    resumes it from them: its folder is that class's); returns how many files were copied."""
    root, keep_dir = Path(config.out_dir), Path(config.keep_dir)
    copied = keep(root, keep_dir, [root / config_file])
    for step in plan(config):
        if step_state(root, step) == "done":
            copied += keep(root, keep_dir, kept_paths(root, step))
            forget_partial_answers(root, keep_dir, step.output)
        elif step.kind == "eval" and Path(step.output).is_dir():
            copied += keep(root, keep_dir, [step.output])  # its answers so far, not its record
    return copied
