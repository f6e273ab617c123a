"""Steps that run one `akd` command each, built from the stages' own configs: a teacher cache, an
evaluation, a distillation run, a pruned model, verified answers, reference answers, a decode
speed. An
experiment's definition names its folders and arms and calls these. Cache and evaluation
commands are written from the stages' configs (`to_cli_args`, checked when the plan is built); a
training command takes the definition's schedule as arguments, like the free-form
`--distill-options` a user adds, and `akd distill` checks them when the step runs. (Grid v2 predates these and keeps its own
builders in study/grid_v2/arms.py.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from common.settings import to_cli_args
from stages.distill.run_folder import CHECKPOINTS_DIR
from stages.evaluate.config import EvalConfig
from stages.evaluate.speed import SpeedConfig
from stages.teacher import TeacherCacheConfig
from study.engine.steps import Step, cache_is_whole, eval_is_whole, run_is_kept, run_is_whole, speed_is_whole

Lazy = Callable[[], str]  # a value known only once an earlier step has run (a choice, a folder)


def _now(value) -> str:
    return str(value()) if callable(value) else str(value)


def cache_step(name: str, out: Path, *, models_dir: str, needs: tuple[str, ...] = (), meta: dict | None = None,
               **options) -> Step:
    """`akd teacher-cache` into `out`; `options`: TeacherCacheConfig's, by field name."""
    def command() -> list[str]:
        config = TeacherCacheConfig.from_options({**options, "out_dir": str(out)})
        return ["teacher-cache", *to_cli_args(config), "--models-dir", models_dir]

    return Step(name, "cache", out, needs=needs, command=command, verify=lambda: cache_is_whole(out),
                meta={"cache": out.name, **(meta or {})})


def eval_step(name: str, out: Path, model: str | Lazy, *, models_dir: str, needs: tuple[str, ...] = (),
              meta: dict | None = None, **options) -> Step:
    """`akd eval` of `model` into `out`; `options`: EvalConfig's, by field name (benchmarks, split,
    n_samples, temperature, ...)."""
    probe = EvalConfig(model="-", **options)  # the settings checked now, not when the step runs

    def command() -> list[str]:
        config = EvalConfig(model=_now(model), out_dir=str(out), **options)
        return ["eval", *to_cli_args(config), "--models-dir", models_dir]

    return Step(name, "eval", out, needs=needs, command=command,
                verify=lambda: eval_is_whole(out, list(probe.benchmarks), probe.split),
                meta={"benchmarks": list(probe.benchmarks), "split": probe.split, "n_samples": probe.n_samples,
                      "temperature": probe.temperature, **(meta or {})})


def speed_step(name: str, out: Path, model: str | Lazy, *, models_dir: str, needs: tuple[str, ...] = (),
               meta: dict | None = None, **options) -> Step:
    """`akd speed` of `model` into `out`: decode tokens/s at a fixed answer length; `options`:
    SpeedConfig's, by field name (prompts, new_tokens, backend)."""
    probe = SpeedConfig(model="-", **options)

    def command() -> list[str]:
        config = SpeedConfig(model=_now(model), out_dir=str(out), **options)
        return ["speed", *to_cli_args(config), "--models-dir", models_dir]

    return Step(name, "speed", out, needs=needs, command=command,
                verify=lambda: speed_is_whole(out, probe.prompts, probe.new_tokens),
                meta={"prompts": probe.prompts, "new_tokens": probe.new_tokens, **(meta or {})})


def train_step(name: str, run_dir: Path, *, caches: list[tuple[Path | Lazy, float | None]], student: str | Lazy,
               loss: str, steps: int, models_dir: str, options: list[str], needs: tuple[str, ...] = (),
               meta: dict | None = None, keep_checkpoints: bool = False) -> Step:
    """`akd distill` of one student with one loss into `run_dir`, for `steps` steps; `options`: the
    rest of its arguments (schedule, batching), the same for every run of a comparison. A cache
    may be Lazy (chosen by an earlier step)."""
    weights = [w for _, w in caches]
    if any(w is None for w in weights) and any(w is not None for w in weights):
        raise ValueError(f"{name}: give every cache a weight or none")

    def command() -> list[str]:
        args = [a for path, _ in caches for a in ("--cache", _now(path))]
        if weights and weights[0] is not None:
            args += [a for w in weights for a in ("--cache-weight", str(round(w, 12)))]
        return ["distill", *args, "--student", _now(student), "--loss", loss, "--run-dir", str(run_dir),
                "--models-dir", models_dir, "--max-steps", str(steps), "--no-progress", *options]

    return Step(name, "train", run_dir, needs=needs, command=command,
                verify=lambda: run_is_whole(run_dir, steps), kept=lambda: run_is_kept(run_dir, steps),
                meta={"loss": loss, "run_dir": str(run_dir), "steps": steps,
                      "caches": [str(p) if not callable(p) else "chosen" for p, _ in caches], "weights": weights,
                      **(meta or {})},
                disposable=() if keep_checkpoints else (run_dir / CHECKPOINTS_DIR,))


def width_prune_step(name: str, source: str, out: Path, mlp_keep: float, *, models_dir: str) -> Step:
    """`akd prune --method width`: weights only, pruned again wherever they are gone."""
    from model_tools.prune import PROVENANCE

    return Step(name, "prune", out, command=lambda: ["prune", source, str(out), "--method", "width",
                                                     "--mlp-keep", str(mlp_keep), "--models-dir", models_dir],
                verify=lambda: (out / PROVENANCE).exists(), keeps=(), kept=lambda: True,
                meta={"source": source, "mlp_keep": mlp_keep})


def references_step(name: str, out: Path) -> Step:
    """`akd data references`: MBPP train's reference programs as a dataset."""
    return _dataset_step(name, out, ["data", "references", "--out", str(out)])


def verified_answers_step(name: str, eval_dir: Path, out: Path, *, needs: tuple[str, ...]) -> Step:
    """`akd data verified-answers`: the evaluated answers that pass their own asserts, as a dataset
    (at least one kept, or the step is not done)."""
    return _dataset_step(name, out, ["data", "verified-answers", str(eval_dir), "--out", str(out)], needs=needs)


def _dataset_step(name: str, out: Path, command: list[str], *, needs: tuple[str, ...] = ()) -> Step:
    """An `akd data` command writing a dataset and its .meta.json counts (both kept: they are
    small); done when at least one row was kept."""
    from stages.evaluate.verified import meta_path

    meta_file = meta_path(out)
    return Step(name, "data", out, needs=needs, command=lambda: command,
                verify=lambda: meta_file.exists() and json.loads(meta_file.read_text())["kept"] > 0,
                meta={"meta_file": str(meta_file)}, keeps=(out, meta_file))
