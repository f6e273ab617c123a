"""The grid as an ordered list of steps, each one `akd` command with one output folder.

Order puts the most informative results first, so a grid stopped half-way still answers
something: choose the teacher template, the enhanced cache, the full-size students on it
and their scores, the teacher's scores, then the plain cache, then the pruned students.
Every command is a normal `akd` call (recorded in the report), run in its own process:
the teacher (vLLM) never shares memory with a student being trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from model_tools.prune import PROVENANCE as PRUNE_PROVENANCE
from stages.distill.checkpoint import CHECKPOINTS_DIR
from stages.distill.rundir import run_slug as _slug
from stages.distill.trainer import FINAL_DIR, SUMMARY_FILE as RUN_SUMMARY_FILE
from study.config import PLAIN, ExperimentConfig, ExperimentError, split_list

CHOICE_FILE = "choice.json"
ENHANCED, PLAIN_CACHE = "enhanced", "plain"


@dataclass
class Step:
    name: str
    kind: str  # select | choose | cache | prune | train | eval
    output: Path
    needs: tuple[str, ...] = ()
    command: Callable[[], list[str]] | None = None  # `akd` arguments, built when the step runs
    action: Callable[[], None] | None = None  # in-process work (choose) instead of a command
    verify: Callable[[], bool] = field(default=lambda: True)  # the output is whole and usable
    meta: dict = field(default_factory=dict)  # what the report needs to place the result
    # what may go once the output verifies; a 0.5B run's resume checkpoint is ~8 GiB, and
    # eight of them overfill this machine's disk
    disposable: tuple[Path, ...] = ()


def build_plan(config: ExperimentConfig) -> list[Step]:
    root = config.root
    steps: list[Step] = []
    template_choice = root / "selection" / CHOICE_FILE
    chosen = lambda: read_choice(template_choice)["chosen"]  # noqa: E731 (read when run)
    student = _slug(config.student)
    pruned_dir = root / "models" / f"{student}-half"

    # 0. teacher templates on MBPP tasks outside the test split
    for template in config.template_names:
        steps.append(_eval_step(config, f"select-{template}", config.teacher, root / "selection" / template,
                                benchmarks="mbpp", split=config.selection_split,
                                template=lambda t=template: t,
                                meta={"role": "teacher", "template": template}))
    steps.append(Step("choose-template", "choose", template_choice,
                      needs=tuple(f"select-{t}" for t in config.template_names),
                      action=lambda: choose_template(config, template_choice),
                      verify=lambda: "chosen" in read_choice(template_choice)))

    # 1-3, full-size student: enhanced cache, its students, their and the teacher's scores
    steps.append(_cache_step(config, ENHANCED, chosen, needs=("choose-template",)))
    steps.append(_eval_step(config, "eval-student", config.student, root / "evals" / "student",
                            meta={"role": "student", "model": student}))
    steps += _student_steps(config, ENHANCED, config.student, split_list(config.enhanced_losses), config.lr)
    steps.append(_eval_step(config, "eval-teacher", config.teacher, root / "evals" / "teacher",
                            meta={"role": "teacher", "template": PLAIN}))
    steps.append(_eval_step(config, "eval-teacher-enhanced", config.teacher,
                            root / "evals" / "teacher-enhanced", template=chosen,
                            needs=("choose-template",), meta={"role": "teacher", "template": ENHANCED}))
    # the prompt-enhancement effect: the same student and loss on the plain cache
    if split_list(config.plain_losses):
        steps.append(_cache_step(config, PLAIN_CACHE, lambda: PLAIN))
        steps += _student_steps(config, PLAIN_CACHE, config.student, split_list(config.plain_losses),
                                config.lr)
    # one cache, two sizes: the depth-pruned student
    if split_list(config.pruned_losses):
        steps.append(Step("prune-student", "prune", pruned_dir,
                          command=lambda: ["prune", config.student, str(pruned_dir),
                                           "--every", str(config.prune_every),
                                           "--models-dir", config.models_dir],
                          verify=lambda: (pruned_dir / PRUNE_PROVENANCE).exists()))
        steps.append(_eval_step(config, "eval-student-pruned", str(pruned_dir),
                                root / "evals" / "student-pruned", needs=("prune-student",),
                                meta={"role": "student", "model": pruned_dir.name}))
        steps += _student_steps(config, ENHANCED, str(pruned_dir), split_list(config.pruned_losses),
                                config.pruned_lr, needs=("prune-student",))
    return steps


def _cache_step(config: ExperimentConfig, name: str, template: Callable[[], str],
                needs: tuple[str, ...] = ()) -> Step:
    out = config.root / "caches" / name

    def command() -> list[str]:
        return ["teacher-cache", "--teacher", config.teacher, "--models-dir", config.models_dir,
                "--dataset", config.dataset, "--limit", str(config.n_examples), "--k", str(config.k),
                "--teacher-template", template(), "--student-template", PLAIN,
                "--max-new-tokens", str(config.cache_max_new_tokens), "--backend", config.backend,
                "--seed", str(config.seed), "--out", str(out), *_templates_file(config)]

    return Step(f"cache-{name}", "cache", out, needs=needs, command=command,
                verify=lambda: cache_is_whole(out), meta={"cache": name})


def _student_steps(config: ExperimentConfig, cache: str, student: str, losses: list[str],
                   lr: float, needs: tuple[str, ...] = ()) -> list[Step]:
    """Train each loss, then score it: same examples, order, steps, schedule and seed."""
    steps = []
    cache_dir = config.root / "caches" / cache
    runs_dir = config.root / "runs" / cache
    slug = _slug(student)
    for loss in losses:
        run_dir = runs_dir / f"{slug}-{loss}"
        name = f"{cache}-{slug}-{loss}"
        meta = {"cache": cache, "model": slug, "loss": loss, "run_dir": str(run_dir)}
        steps.append(Step(
            f"train-{name}", "train", run_dir, needs=(*needs, f"cache-{cache}"),
            command=lambda loss=loss: ["distill", "--cache", str(cache_dir), "--student", student,
                                       "--loss", loss, "--models-dir", config.models_dir,
                                       "--runs-dir", str(runs_dir), "--max-steps", str(config.max_steps),
                                       "--lr", str(lr), "--seed", str(config.seed),
                                       "--no-progress", *config.distill_options.split()],
            verify=lambda run_dir=run_dir: run_is_whole(run_dir, config.max_steps), meta=meta,
            disposable=(run_dir / CHECKPOINTS_DIR,)))
        steps.append(_eval_step(config, f"eval-{name}", str(run_dir / FINAL_DIR),
                                config.root / "evals" / name, needs=(f"train-{name}",),
                                meta={"role": "distilled", **meta}))
    return steps


def _eval_step(config: ExperimentConfig, name: str, model: str, out: Path, *,
               benchmarks: str | None = None, split: str = "test",
               template: Callable[[], str] | None = None, needs: tuple[str, ...] = (),
               meta: dict | None = None) -> Step:
    wanted = split_list(benchmarks or config.benchmarks)

    def command() -> list[str]:
        args = ["eval", "--model", model, "--out", str(out), "--models-dir", config.models_dir,
                "--split", split, "--limit", str(config.eval_limit), "--backend", config.backend,
                "--max-new-tokens", str(config.eval_max_new_tokens)]
        if meta and meta.get("role") == "teacher":
            args += ["--role", "teacher"]
        if config.trust_model_code:
            args += ["--trust-model-code"]
        if template is not None and template() != PLAIN:
            args += ["--template", template(), *_templates_file(config)]
        return args + [arg for b in wanted for arg in ("--benchmark", b)]

    return Step(name, "select" if name.startswith("select-") else "eval", out, needs=needs,
                command=command, verify=lambda: eval_is_whole(out, wanted, split),
                meta={**(meta or {}), "benchmarks": wanted, "split": split})


# ---- choosing the teacher template (step 0) ----

def choose_template(config: ExperimentConfig, choice_file: Path) -> dict:
    """The best non-plain candidate by pass@1 on the selection tasks (earlier in the list
    wins a tie), with plain's score beside it and a paired test of the two."""
    from study.stats import compare
    from study.results import load_passes, load_summary

    scores, passes = {}, {}
    for template in config.template_names:
        folder = config.root / "selection" / template
        scores[template] = load_summary(folder)["benchmarks"]["mbpp"]["pass@1"]
        passes[template] = load_passes(folder, "mbpp")
    candidates = [t for t in config.template_names if t != PLAIN]
    chosen = max(candidates, key=lambda t: (scores[t], -candidates.index(t)))
    choice = {"chosen": chosen, "split": config.selection_split, "pass@1": scores,
              "beats_plain": scores[chosen] > scores[PLAIN],
              "chosen_vs_plain": compare(passes[chosen], passes[PLAIN])}
    choice_file.parent.mkdir(parents=True, exist_ok=True)
    choice_file.write_text(json.dumps(choice, indent=2) + "\n")
    return choice


def read_choice(choice_file: Path) -> dict:
    if not choice_file.exists():
        raise ExperimentError(f"{choice_file} is missing: the template choice has not run yet")
    return json.loads(choice_file.read_text())


# ---- is an output whole? ----

def cache_is_whole(cache_dir: Path) -> bool:
    from cache_schema import CacheError, verify_cache

    try:
        verify_cache(cache_dir)
    except (CacheError, FileNotFoundError):
        return False
    return True


def run_is_whole(run_dir: Path, steps: int) -> bool:
    from transformers.utils import CONFIG_NAME  # final/ is a saved HF model folder

    summary = run_dir / RUN_SUMMARY_FILE
    return ((run_dir / FINAL_DIR / CONFIG_NAME).exists() and summary.exists()
            and json.loads(summary.read_text()).get("steps") == steps)


def eval_is_whole(out: Path, benchmarks: list[str], split: str) -> bool:
    path = out / "summary.json"
    if not path.exists():
        return False
    summary = json.loads(path.read_text())
    return summary.get("split") == split and all(b in summary.get("benchmarks", {}) for b in benchmarks)


def _templates_file(config: ExperimentConfig) -> list[str]:
    return ["--templates-file", config.templates_file] if config.templates_file else []
