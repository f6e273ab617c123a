"""Grid version 2's steps: where each writes, what it needs, the `akd` command it runs.

Models are named by arm: teacher, student, akd (off-policy at the chosen lr),
akd-onpolicy, ce, fkl, rkl, akd-mixed, akd-mbpp, sweep-<lr>, small (the width-pruned
student before training) and small-<loss>. Each model's evaluations live in
evals/<model>/<split>/ (test: HumanEval + MBPP test; train: MBPP tasks 601-974;
selection: MBPP tasks outside the test split; mid: a smaller student half-way); the
fixed-length decode speed of teacher, student and small in speed/<model>/. Every
training command comes from one builder (`_distill`), with the schedule of its student
size read from budget.json, so no two arms of one size can differ in steps, schedule or
seed. The rollouts and the teacher's scoring of them come from study/onpolicy.py's
builders, through a one-round OnPolicyConfig.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.settings import to_cli_args
from stages.distill.run_folder import CHECKPOINTS_DIR, FINAL_DIR, checkpoint_model, run_path, run_slug
from stages.evaluate.config import EvalConfig
from stages.evaluate.speed import SpeedConfig
from stages.teacher import TeacherCacheConfig
from study.onpolicy import rounds as onpolicy
from study.grid_v2.budget import BUDGET_FILE, RunBudget, read_budget, write_budget
from study.engine.choice_file import read_choice, write_choice
from study.grid_v2.choices import choose_lr, choose_mbpp_base, choose_template
from study.grid_v2.config import PLAIN, ExperimentConfig
from study.engine.settings import split_list
from study.engine.steps import (Step, cache_is_whole, eval_is_whole, run_is_kept, run_is_whole, speed_is_whole, whole_when_known)

TEST = ("humaneval", "mbpp")  # the test split's benchmarks
FULL_ARMS = ("akd", "akd-onpolicy", "ce", "fkl", "rkl", "akd-mixed", "akd-mbpp")
MBPP_DATA_ARMS = ("akd-mbpp",)  # trained on MBPP train: never scored on it


class Grid:
    """The folders of one grid and the builders of its steps."""

    def __init__(self, config: ExperimentConfig):
        self.config = config
        root = self.root = config.root
        self.offpolicy_cache = root / "caches" / "offpolicy"
        self.mbpp_cache = root / "caches" / "mbpp-train"
        self.mbpp_data = root / "data" / "mbpp-train-verified.jsonl"
        self.budget_file = root / BUDGET_FILE
        self.template_file = root / "choices" / "template.json"
        self.lr_file = root / "choices" / "lr.json"
        self.mbpp_base_file = root / "choices" / "mbpp-base.json"
        self.small_dir = root / "models" / f"{run_slug(config.student)}-mlp{round(100 * config.small_mlp_keep)}"
        self.round = onpolicy.rounds_of(self._onpolicy_config(PLAIN))[0]  # its folders only

    # ---- lazily read choices ----
    def template(self) -> str:
        return read_choice(self.template_file)["chosen"]

    def lr(self) -> float:
        return float(read_choice(self.lr_file)["chosen"])

    def budget(self):
        return read_budget(self.budget_file)

    def eval_dir(self, model: str, split: str) -> Path:
        return self.root / "evals" / model / split

    def run_dir(self, arm: str, student: str, loss: str) -> Path:
        return run_path(self.root / "runs" / arm, student, loss)

    # ---- the plan ----
    def steps(self) -> list[Step]:
        c = self.config
        steps = self._template_steps()
        steps.append(self._cache_step("cache-offpolicy", self.offpolicy_cache, c.dataset, needs=("choose-template",),
                                      limit=c.n_examples, max_new_tokens=c.cache_max_new_tokens))
        steps.append(Step("budget", "budget", self.budget_file, needs=("cache-offpolicy",),
                          action=lambda: write_budget(c, self.offpolicy_cache, self.budget_file),
                          verify=self.budget_file.exists))
        steps += self._sweep_steps()
        steps += self._evals("student", c.student, ("test", "train"), role="student", size="full")
        steps += self._full_arm("akd", "akd", [(self.offpolicy_cache, None)], needs=("cache-offpolicy",))
        steps += self._onpolicy_steps()
        steps += self._full_arm("akd-onpolicy", "akd", [(self.round.cache, None)], needs=("score-rollouts",),
                                policy="onpolicy")
        for loss in split_list(c.losses):
            steps += self._full_arm(loss, loss, [(self.offpolicy_cache, None)], needs=("cache-offpolicy",))
        steps += self._full_arm("akd-mixed", "akd", [(self.round.cache, c.onpolicy_weight),
                                                     (self.offpolicy_cache, 1 - c.onpolicy_weight)],
                                needs=("score-rollouts", "cache-offpolicy"), policy="mixed")
        steps += self._mbpp_steps()
        steps += self._evals("teacher", c.teacher, ("test",), role="teacher")
        if split_list(c.small_losses):
            steps += self._small_steps()
        steps += self._speed_steps()  # last: added after grid v2 started, so nothing finished moves
        return steps

    def _template_steps(self) -> list[Step]:
        c = self.config
        steps = [self._eval_step(f"select-{t}", f"teacher-{t}", c.teacher, "selection", ("mbpp",), role="teacher",
                                 template=t, out=self.root / "selection" / t)
                 for t in c.template_names]

        def decide() -> None:
            passes = {t: _passes(self.root / "selection" / t, "mbpp") for t in c.template_names}
            write_choice(self.template_file, choose_template(passes, c.selection_split))

        steps.append(Step("choose-template", "choose", self.template_file,
                          needs=tuple(f"select-{t}" for t in c.template_names), action=decide,
                          verify=self.template_file.exists))
        return steps

    def _sweep_steps(self) -> list[Step]:
        c = self.config
        steps = self._evals("student", c.student, ("selection",), role="student", size="full")
        names = []
        for lr in c.lr_values:
            model = f"sweep-{lr:g}"
            run = self.run_dir(model, c.student, "akd")
            steps.append(self._train_step(model, run, [(self.offpolicy_cache, None)], c.student, "akd",
                                          lr=lambda lr=lr: lr, budget=lambda: self.budget().sweep,
                                          needs=("budget",), meta={"size": "sweep", "lr": lr}))
            steps += self._evals(model, str(run / FINAL_DIR), ("selection",), role="distilled",
                                 needs=(f"train-{model}",), size="sweep")
            names += [f"train-{model}", f"eval-{model}-selection"]

        def decide() -> None:
            from study.engine.results import final_heldout_fkl

            runs = {lr: {"passes": _passes(self.eval_dir(f"sweep-{lr:g}", "selection"), "mbpp"),
                         "heldout_fkl": final_heldout_fkl(self.run_dir(f"sweep-{lr:g}", c.student, "akd"))}
                    for lr in c.lr_values}
            student = _passes(self.eval_dir("student", "selection"), "mbpp")
            write_choice(self.lr_file, choose_lr(runs, c.selection_split, c.lr_guard, student))

        steps.append(Step("choose-lr", "choose", self.lr_file, needs=("eval-student-selection", *names),
                          action=decide, verify=self.lr_file.exists))
        return steps

    def _onpolicy_steps(self) -> list[Step]:
        """One round of the student's own answers to the cache's prompts, scored by the teacher."""
        round_ = self.round
        meta = {"policy": "onpolicy"}
        return [Step("rollout", "rollout", round_.rollouts, needs=("choose-template",),
                     command=lambda: onpolicy.rollout_args(self._onpolicy_config(self.template()), round_),
                     verify=lambda: onpolicy.responses_are_whole(round_.rollouts), meta=meta),
                Step("score-rollouts", "cache", round_.cache, needs=("rollout",),
                     command=lambda: onpolicy.score_args(self._onpolicy_config(self.template()), round_),
                     verify=lambda: cache_is_whole(round_.cache), meta=meta)]

    def _onpolicy_config(self, teacher_template: str) -> onpolicy.OnPolicyConfig:
        c = self.config
        return onpolicy.OnPolicyConfig(
            out_dir=str(self.root / "onpolicy"), teacher=c.teacher, student=c.student, models_dir=c.models_dir,
            dataset=c.dataset, rounds=1, prompts=c.n_examples, first_row=0, n=1,
            temperature=c.rollout_temperature, max_new_tokens=c.cache_max_new_tokens, student_template=PLAIN,
            teacher_template=teacher_template, k=c.k, seed=c.seed, backend=c.backend)

    def _mbpp_steps(self) -> list[Step]:
        """The teacher answers MBPP train; the answers that pass their asserts become a scored
        cache; AKD trains on it mixed with the CodeAlpaca cache (off- or on-policy)."""
        c = self.config
        steps = self._evals("teacher", c.teacher, ("train",), role="teacher")
        meta_file = self.mbpp_data.with_name(self.mbpp_data.name.split(".")[0] + ".meta.json")
        steps.append(Step("verify-mbpp-answers", "data", self.mbpp_data, needs=("eval-teacher-train",),
                          command=lambda: ["data", "verified-answers", str(self.eval_dir("teacher", "train")),
                                           "--out", str(self.mbpp_data)],
                          verify=lambda: meta_file.exists() and json.loads(meta_file.read_text())["kept"] > 0,
                          meta={"meta_file": str(meta_file)}, keeps=(self.mbpp_data, meta_file)))
        steps.append(self._cache_step("cache-mbpp-train", self.mbpp_cache, str(self.mbpp_data),
                                      needs=("verify-mbpp-answers", "choose-template"), limit=None,
                                      max_new_tokens=c.eval_max_new_tokens, responses_from="output"))
        auto = c.mbpp_base == "auto"

        def decide() -> None:
            off = _passes(self.eval_dir("akd", "train"), "mbpp") if auto else None
            on = _passes(self.eval_dir("akd-onpolicy", "train"), "mbpp") if auto else None
            write_choice(self.mbpp_base_file, choose_mbpp_base(c.mbpp_base, off, on))

        steps.append(Step("choose-mbpp-base", "choose", self.mbpp_base_file,
                          needs=("eval-akd-train", "eval-akd-onpolicy-train") if auto else (),
                          action=decide, verify=self.mbpp_base_file.exists))

        def caches() -> list[tuple[Path, float]]:
            base = read_choice(self.mbpp_base_file)["chosen"]
            return [(self.round.cache if base == "onpolicy" else self.offpolicy_cache, 1 - c.mbpp_weight),
                    (self.mbpp_cache, c.mbpp_weight)]

        base_needs = ("cache-offpolicy",) if c.mbpp_base == "offpolicy" else ("cache-offpolicy", "score-rollouts")
        steps += self._full_arm("akd-mbpp", "akd", caches, needs=("cache-mbpp-train", "choose-mbpp-base", *base_needs),
                                policy="mbpp", splits=("test",))
        return steps

    def _small_steps(self) -> list[Step]:
        c, small = self.config, str(self.small_dir)
        from model_tools.prune import PROVENANCE

        steps = [Step("prune-small", "prune", self.small_dir,
                      command=lambda: ["prune", c.student, small, "--method", "width", "--mlp-keep",
                                       str(c.small_mlp_keep), "--models-dir", c.models_dir],
                      verify=lambda: (self.small_dir / PROVENANCE).exists(),
                      keeps=(), kept=lambda: True)]  # weights only: pruned again where they are gone
        steps += self._evals("small", small, ("test", "train"), role="student", needs=("prune-small",), size="small")
        midpoint = split_list(c.small_midpoint_eval)
        for loss in split_list(c.small_losses):
            model, run = f"small-{loss}", self.run_dir(f"small-{loss}", small, loss)
            steps.append(self._train_step(model, run, [(self.offpolicy_cache, None)], small, loss,
                                          lr=lambda: c.small_lr, budget=lambda: self.budget().small,
                                          needs=("prune-small", "budget"), meta={"size": "small"},
                                          keep_checkpoints=bool(midpoint)))
            if midpoint:
                checkpoint = lambda run=run: checkpoint_model(run, self.budget().small_midpoint)
                steps.append(self._eval_step(f"eval-{model}-mid", model, checkpoint, "mid", tuple(midpoint),
                                             role="distilled", needs=(f"train-{model}",),
                                             meta={"size": "small", "checkpoint": "mid"}, dtype="bfloat16",
                                             disposable=(run / CHECKPOINTS_DIR,)))
            steps += self._evals(model, str(run / FINAL_DIR), ("test", "train"), role="distilled",
                                 needs=(f"train-{model}",), size="small")
        return steps

    def _speed_steps(self) -> list[Step]:
        """Decode tokens/s at a fixed answer length (`akd speed`) of the teacher, the student and
        the pruned student: an evaluation's tokens/s depends on how long each model's answers
        are. The pruned student before training has the trained small students' architecture, so
        its one measurement serves them all (as the original student's serves the full-size arms)."""
        c = self.config
        models = [("teacher", c.teacher, "teacher", "teacher", ()), ("student", c.student, "student", "full", ())]
        if split_list(c.small_losses):
            models.append(("small", str(self.small_dir), "student", "small", ("prune-small",)))
        return [self._speed_step(*model) for model in models]

    def _speed_step(self, model: str, path: str, role: str, size: str, needs: tuple[str, ...]) -> Step:
        c, out = self.config, self.speed_dir(model)
        config = SpeedConfig(model=path, out_dir=str(out), backend=c.backend)
        return Step(f"speed-{model}", "speed", out, needs=needs,
                    command=lambda: ["speed", *to_cli_args(config), "--models-dir", c.models_dir],
                    verify=lambda: speed_is_whole(out, config.prompts, config.new_tokens),
                    meta={"model": model, "role": role, "size": size, "prompts": config.prompts,
                          "new_tokens": config.new_tokens})

    def speed_dir(self, model: str) -> Path:
        return self.root / "speed" / model

    # ---- builders ----
    def _full_arm(self, model: str, loss: str, caches, *, needs: tuple[str, ...], policy: str = "offpolicy",
                  splits: tuple[str, ...] = ("test", "train")) -> list[Step]:
        """A full-size student trained at the chosen lr on the full budget, then scored."""
        c = self.config
        run = self.run_dir(model, c.student, loss)
        train = self._train_step(model, run, caches, c.student, loss, lr=self.lr, budget=lambda: self.budget().full,
                                 needs=(*needs, "budget", "choose-lr"), meta={"size": "full", "policy": policy})
        return [train, *self._evals(model, str(run / FINAL_DIR), splits, role="distilled",
                                    needs=(train.name,), size="full")]

    def _train_step(self, model: str, run: Path, caches, student: str, loss: str, *, lr, budget,
                    needs: tuple[str, ...], meta: dict, keep_checkpoints: bool = False) -> Step:
        c = self.config
        caches_now = caches if callable(caches) else (lambda: caches)

        def command() -> list[str]:
            schedule: RunBudget = budget()
            paths = [str(path) for path, _ in caches_now()]
            weights = [w for _, w in caches_now()]
            return ["distill", *onpolicy.cache_args(paths, weights if all(w is not None for w in weights) else None),
                    "--student", student, "--loss", loss, "--runs-dir", str(run.parent),
                    "--models-dir", c.models_dir, "--lr", str(lr()), "--seed", str(c.seed),
                    *schedule.args(self.budget().grad_accum, c.max_batch_tokens), "--no-progress",
                    *c.distill_options.split()]

        return Step(f"train-{model}", "train", run, needs=needs, command=command,
                    verify=whole_when_known(lambda: run_is_whole(run, budget().steps)),
                    kept=whole_when_known(lambda: run_is_kept(run, budget().steps)),
                    meta={"model": model, "loss": loss, "run_dir": str(run), **meta},
                    disposable=() if keep_checkpoints else (run / CHECKPOINTS_DIR,))

    def _evals(self, model: str, path: str, splits, *, role: str, needs: tuple[str, ...] = (),
               size: str | None = None) -> list[Step]:
        return [self._eval_step(f"eval-{model}-{split}", model, path, split,
                                ("mbpp",) if split in ("train", "selection") else TEST, role=role, needs=needs,
                                meta={"size": size})
                for split in splits]

    def _eval_step(self, name: str, model: str, path, split: str, benchmarks: tuple[str, ...], *, role: str,
                   needs: tuple[str, ...] = (), template: str | None = None, out: Path | None = None,
                   meta: dict | None = None, dtype: str | None = None, disposable: tuple[Path, ...] = ()) -> Step:
        c = self.config
        out = out or self.eval_dir(model, split)
        mbpp_split = "test" if split == "mid" else split
        model_path = path if callable(path) else (lambda: path)

        def command() -> list[str]:
            options = dict(model=str(model_path()), out_dir=str(out), role=role, benchmarks=benchmarks,
                           backend=c.backend, limit=c.eval_limit or None, max_new_tokens=c.eval_max_new_tokens,
                           split=mbpp_split, trust_model_code=c.trust_model_code)
            if template and template != PLAIN:
                options.update(template=template, templates_file=c.templates_file or None)
            if dtype:
                options["dtype"] = dtype
            return ["eval", *to_cli_args(EvalConfig(**options)), "--models-dir", c.models_dir]

        return Step(name, "select" if name.startswith("select-") else "eval", out, needs=needs, command=command,
                    verify=lambda: eval_is_whole(out, list(benchmarks), mbpp_split),
                    meta={"model": model, "role": role, "split": split, "benchmarks": list(benchmarks),
                          **(meta or {})}, disposable=disposable)

    def _cache_step(self, name: str, out: Path, dataset: str, *, needs: tuple[str, ...], limit: int | None,
                    max_new_tokens: int, responses_from: str | None = None) -> Step:
        c = self.config

        def command() -> list[str]:
            config = TeacherCacheConfig.from_options(dict(
                model=c.teacher, dataset=dataset, out_dir=str(out), backend=c.backend, student_tokenizer=c.student,
                limit=limit, teacher_template=self.template(), student_template=PLAIN, k=c.k, seed=c.seed,
                max_new_tokens=max_new_tokens, responses_from=responses_from, templates_file=c.templates_file or None))
            return ["teacher-cache", *to_cli_args(config), "--models-dir", c.models_dir]

        return Step(name, "cache", out, needs=needs, command=command, verify=lambda: cache_is_whole(out),
                    meta={"cache": out.name})


def _passes(eval_dir: Path, benchmark: str) -> dict[str, bool]:
    from study.engine.results import load_passes

    return load_passes(eval_dir, benchmark)

