"""Grid v3 as an ordered list of steps, each one `akd` command with one output folder
(study/engine/akd_steps.py builds them).

The order is what each CPU hour can decide (issue 24), so any prefix of the plan answers
something:

1. target-near data: the teacher answers MBPP's train problems (601-974); the answers that pass
   their own asserts are scored into a cache; AKD trains on CodeAlpaca plus those (akd-mix), on
   those alone (akd-mbpp) and on CodeAlpaca alone (akd), against the original student on
   HumanEval and MBPP test (never trained on);
2. the width-pruned student, which starts far below its teacher: first its teacher is chosen, its
   unpruned parent or the 1.5B (a short AKD run from each on its own CodeAlpaca answers,
   study/grid_v3/teacher_choice.py), then it trains with each of `small_losses` on the chosen
   teacher's cache (its recovery curve: held-out fidelity at every checkpoint); once it is
   scored, `akd speed` times teacher, student and pruned student decoding the same fixed-length
   answers on this machine's class (what the pruned student's accuracy is kept at);
3. the full-size student with the other losses (`full_losses`) on the same cache and budget;
4. the teacher's own scores (the accuracy loss), then the greedy headline of every model (of the
   student and akd-mix right after akd-mix's sampled one: the first pair that weighs greedy
   against sampled pass@1).

Every deciding evaluation is sampled (`eval_samples` answers per task at `eval_temperature`);
models never trained on MBPP train are also scored there. Every run also scores MBPP train's
reference programs at each held-out point (a probe cache, `akd distill --probe-cache`): one
yardstick no teacher wrote, for runs from different teachers (not held out for akd-mix and
akd-mbpp, which train on answers to the same MBPP-train prompts). Folders: caches/, data/, models/,
runs/<arm>/, choices/, evals/<cpu class>/<model>/<split>-<sampled|greedy>/.

The same model answers differently on two CPU classes (their kernels differ; docs/measurements.md
gives the churn measured), so the report pairs only evaluations made on one class. A model is
evaluated once, on the class of the machine that gets to it; the originals (`student`,
`small`), always at hand, are evaluated again on this machine's class whenever a model they
are compared with is (or will be) evaluated here and they are not yet.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from common.machine import cpu_class, machine_facts
from stages.distill.run_folder import FINAL_DIR, run_slug
from study.engine.akd_steps import (cache_step, eval_step, references_step, speed_step, train_step,
                                    verified_answers_step, width_prune_step)
from study.engine.choice_file import read_choice, write_choice
from study.engine.results import probe_curve, probe_sequences
from study.engine.settings import ExperimentError, split_list
from study.engine.steps import Step
from study.grid_v3.config import GridV3Config
from study.grid_v3.teacher_choice import CANDIDATES, choose_small_teacher

TEST = ("humaneval", "mbpp")
MBPP_TRAINED = ("akd-mix", "akd-mbpp")  # trained on MBPP train answers: never scored on that split
# the first pair scored greedy as well as sampled: the paired difference's standard error each way says
# what a sampled task is worth (issue 24's power ratio) while the rest of the plan can still use it
POWER_PAIR = ("student", "akd-mix")
ORIGINALS = ("student", "small")  # what the distilled students are compared with: re-evaluated per CPU class
EVAL_STEP = re.compile(r"^eval-(?P<model>.+)-(?P<split>test|train)-(?P<mode>sampled|greedy)@(?P<cpu>[a-z0-9_]+)$")
SPEED_STEP = re.compile(r"^speed-(?P<model>.+)@(?P<cpu>[a-z0-9_]+)$")
TIMED = ("teacher", "student", "small")  # decode speed: the trained pruned students share small's architecture


class GridV3:
    """The folders of one grid v3 and the builders of its steps."""

    def __init__(self, config: GridV3Config, cpu: str | None = None):
        """`cpu`: the CPU class this machine's evaluations are made on (default: this machine's)."""
        self.config = config
        self.cpu = cpu or cpu_class(machine_facts())
        root = self.root = config.root
        self.codealpaca_cache = root / "caches" / "codealpaca"
        self.mbpp_cache = root / "caches" / "mbpp-train"
        self.mbpp_data = root / "data" / "mbpp-train-verified.jsonl"
        self.references_data = root / "data" / "mbpp-train-references.jsonl"
        self.references_cache = root / "caches" / "mbpp-references"  # every run's probe
        self.parent_cache = root / "caches" / "codealpaca-parent"  # the pruned student's parent's answers
        self.small_teacher_file = root / "choices" / "small-teacher.json"
        self.small_dir = root / "models" / f"{run_slug(config.student)}-mlp{round(100 * config.small_mlp_keep)}"

    def eval_dir(self, model: str, split: str, mode: str, cpu: str | None = None) -> Path:
        return self.root / "evals" / (cpu or self.cpu) / model / f"{split}-{mode}"

    @property
    def teacher_answers(self) -> Path:
        """The teacher's greedy MBPP-train answers: data for the target-near cache, made once."""
        return self.root / "evals" / "teacher" / "train-greedy"

    def run_dir(self, arm: str) -> Path:
        return self.root / "runs" / arm

    def speed_dir(self, model: str, cpu: str | None = None) -> Path:
        return self.root / "speed" / (cpu or self.cpu) / model

    # ---- the plan ----
    def steps(self) -> list[Step]:
        c = self.config
        steps = [self._cache("cache-codealpaca", self.codealpaca_cache, dataset=c.dataset, offset=c.first_row,
                             limit=c.n_examples, max_new_tokens=c.cache_max_new_tokens)]
        # 1. target-near data
        steps.append(self._eval("eval-teacher-train-greedy", "teacher", c.teacher, "train", "greedy", role="teacher",
                                out=self.teacher_answers))
        steps.append(verified_answers_step("verify-mbpp-answers", self.teacher_answers,
                                           self.mbpp_data, needs=("eval-teacher-train-greedy",)))
        steps.append(self._cache("cache-mbpp-train", self.mbpp_cache, dataset=str(self.mbpp_data), limit=None,
                                 responses_from="output", max_new_tokens=c.eval_max_new_tokens,
                                 needs=("verify-mbpp-answers",)))
        steps.append(references_step("data-mbpp-references", self.references_data))
        steps.append(self._cache("cache-mbpp-references", self.references_cache, dataset=str(self.references_data),
                                 limit=c.eval_limit or None, responses_from="output",
                                 max_new_tokens=c.eval_max_new_tokens, needs=("data-mbpp-references",)))
        steps += self._scored("student", c.student, role="student", size="full")
        mix = [(self.codealpaca_cache, 1 - c.mbpp_weight), (self.mbpp_cache, c.mbpp_weight)]
        steps += self._arm("akd-mix", "akd", mix, needs=("cache-codealpaca", "cache-mbpp-train"), data="mix")
        steps += self._greedy(POWER_PAIR)  # greedy against sampled, early enough to adjust eval_samples
        steps += self._arm("akd-mbpp", "akd", [(self.mbpp_cache, None)], needs=("cache-mbpp-train",), data="mbpp")
        steps += self._arm("akd", "akd", [(self.codealpaca_cache, None)], needs=("cache-codealpaca",),
                           data="codealpaca")
        # 2. the pruned student
        small = str(self.small_dir)
        steps.append(width_prune_step("prune-small", c.student, self.small_dir, c.small_mlp_keep,
                                      models_dir=c.models_dir))
        steps += self._scored("small", small, role="student", size="small", needs=("prune-small",))
        steps += self._speeds()
        steps += self._teacher_choice(small)
        for loss in split_list(c.small_losses):
            steps += self._arm(f"small-{loss}", loss, [(self.small_teacher_cache, None)], size="small",
                               needs=("cache-codealpaca", "cache-codealpaca-parent", "choose-small-teacher",
                                      "prune-small"), data="codealpaca", student=small)
        # 3. the full-size student with the other losses
        for loss in split_list(c.full_losses):
            steps += self._arm(loss, loss, [(self.codealpaca_cache, None)], needs=("cache-codealpaca",),
                               data="codealpaca")
        # 4. the teacher's scores, then the greedy headline
        steps += self._scored("teacher", c.teacher, role="teacher", size="teacher", splits=("test",))
        steps += self._greedy([m for m, *_ in self._models() if m not in POWER_PAIR])
        return self._on_this_class(steps)

    def _greedy(self, names) -> list[Step]:
        """The greedy headline evaluations of the named models (none without greedy_headline)."""
        if not self.config.greedy_headline:
            return []
        return [self._eval(f"eval-{model}-test-greedy", model, path, "test", "greedy", role=role, needs=needs)
                for model, path, role, needs in self._models() if model in names]

    def evaluations_done(self) -> dict[tuple[str, str, str], dict[str, Path]]:
        """(model, split, mode) -> {CPU class: folder} of every finished deciding or headline
        evaluation, on whichever machine it ran (their records and folders are kept)."""
        done: dict[tuple[str, str, str], dict[str, Path]] = {}
        for path in sorted((self.root / "steps").glob("eval-*@*.json")):
            match = EVAL_STEP.match(path.stem)
            if not match or json.loads(path.read_text()).get("status") != "done":
                continue
            folder = self.eval_dir(match["model"], match["split"], match["mode"], match["cpu"])
            if folder.is_dir():
                done.setdefault((match["model"], match["split"], match["mode"]), {})[match["cpu"]] = folder
        return done

    def speeds_done(self) -> dict[str, dict[str, Path]]:
        """CPU class -> {model: folder} of every finished `akd speed` (speed.json inside)."""
        done: dict[str, dict[str, Path]] = {}
        for path in sorted((self.root / "steps").glob("speed-*@*.json")):
            match = SPEED_STEP.match(path.stem)
            folder = self.speed_dir(match["model"], match["cpu"]) if match else None
            if folder and json.loads(path.read_text()).get("status") == "done" and folder.is_dir():
                done.setdefault(match["cpu"], {})[match["model"]] = folder
        return done

    def _speeds(self) -> list[Step]:
        """Decode tokens/s at a fixed answer length of teacher, student and pruned student, all three
        on this machine's class (a speed-up is a ratio within one class), unless another class has
        timed all three already."""
        done = self.speeds_done()
        if any(set(TIMED) <= set(models) for cpu, models in done.items() if cpu != self.cpu):
            return []
        c = self.config
        models = {"teacher": (c.teacher, "teacher", ()), "student": (c.student, "student", ()),
                  "small": (str(self.small_dir), "student", ("prune-small",))}
        return [speed_step(f"speed-{model}@{self.cpu}", self.speed_dir(model), path, models_dir=c.models_dir,
                           needs=needs, prompts=c.speed_prompts, new_tokens=c.speed_new_tokens, backend=c.backend,
                           meta={"model": model, "role": role, "size": "teacher" if model == "teacher" else
                                 _size(model), "speed_class": self.cpu})
                for model, (path, role, needs) in models.items()]

    def _on_this_class(self, steps: list[Step]) -> list[Step]:
        """Leave out the evaluations made on another CPU class, except an original's where a model
        compared with it is evaluated on this class."""
        done = self.evaluations_done()

        def elsewhere(step: Step) -> bool:
            classes = done.get(_eval_key(step), {}) if step.meta.get("cpu_class") else {}
            return bool(classes) and self.cpu not in classes

        def compared(step: Step) -> tuple[str, str, str]:  # small-* arms pair with `small`, the rest with `student`
            return _size(step.meta["model"]), step.meta["split"], step.meta["mode"]

        here = {compared(s) for s in steps
                if s.meta.get("cpu_class") and s.meta["model"] not in ORIGINALS and not elsewhere(s)}
        return [s for s in steps if not elsewhere(s) or (s.meta["model"] in ORIGINALS and compared(s) in here)]

    def _models(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(model, path, role, needs) of every model the plan scores, teacher first."""
        c = self.config
        models = [("teacher", c.teacher, "teacher", ()), ("student", c.student, "student", ())]
        arms = ["akd-mix", "akd-mbpp", "akd"]
        models += [(arm, str(self.run_dir(arm) / FINAL_DIR), "distilled", (f"train-{arm}",)) for arm in arms]
        models.append(("small", str(self.small_dir), "student", ("prune-small",)))
        for arm in [f"small-{loss}" for loss in split_list(c.small_losses)] + split_list(c.full_losses):
            models.append((arm, str(self.run_dir(arm) / FINAL_DIR), "distilled", (f"train-{arm}",)))
        return models

    # ---- the pruned student's teacher ----
    def small_teacher_cache(self) -> str:
        """The cache of the teacher chosen for the pruned student (known once it is chosen)."""
        return str(self._candidate_caches()[read_choice(self.small_teacher_file)["chosen"]])

    def _candidate_caches(self) -> dict[str, Path]:
        return {"parent": self.parent_cache, "teacher": self.codealpaca_cache}

    def _teacher_choice(self, small: str) -> list[Step]:
        """The parent's answers to the same CodeAlpaca rows, a short AKD run of the pruned student
        from each teacher's cache, then the choice (study/grid_v3/teacher_choice.py)."""
        c = self.config
        steps = [self._cache("cache-codealpaca-parent", self.parent_cache, model=c.student, dataset=c.dataset,
                             offset=c.first_row, limit=c.n_examples, max_new_tokens=c.cache_max_new_tokens,
                             meta={"teacher": "parent"})]
        needs = {"parent": "cache-codealpaca-parent", "teacher": "cache-codealpaca"}
        for name, cache in self._candidate_caches().items():
            steps.append(self._train(f"small-from-{name}", "akd", [(cache, None)], steps=c.teacher_choice_steps,
                                     size="small", needs=(needs[name], "prune-small"), data="codealpaca",
                                     student=small, meta={"teacher_choice": name}))
        steps.append(Step("choose-small-teacher", "choose", self.small_teacher_file,
                          needs=tuple(f"train-small-from-{name}" for name in CANDIDATES),
                          action=self._decide_small_teacher, verify=self.small_teacher_file.exists))
        return steps

    def _decide_small_teacher(self) -> None:
        c = self.config
        probe = self.references_cache.name
        runs = {}
        for name, cache in self._candidate_caches().items():
            run_dir = self.run_dir(f"small-from-{name}")
            curve = probe_curve(run_dir, probe)
            if not curve:
                raise ExperimentError(f"{run_dir}: no evaluation of the probe {probe} in its metrics")
            runs[name] = {"before": probe_sequences(run_dir, probe, curve[0]["step"]),
                          "after": probe_sequences(run_dir, probe, curve[-1]["step"]),
                          "tokens_seen": curve[-1]["tokens_seen"], "steps": curve[-1]["step"],
                          "model": c.student if name == "parent" else c.teacher, "cache": str(cache)}
        write_choice(self.small_teacher_file, choose_small_teacher(runs))

    # ---- builders ----
    def _arm(self, arm: str, loss: str, caches, *, needs: tuple[str, ...], data: str, size: str = "full",
             student: str | None = None) -> list[Step]:
        """One run, then its sampled scores (MBPP train too unless it trained on it)."""
        c = self.config
        train = self._train(arm, loss, caches, steps=c.small_steps if size == "small" else c.full_steps, size=size,
                            needs=needs, data=data, student=student)
        splits = ("test",) if arm in MBPP_TRAINED else ("test", "train")
        return [train, *self._scored(arm, str(self.run_dir(arm) / FINAL_DIR), role="distilled", size=size,
                                     needs=(train.name,), splits=splits)]

    def _train(self, arm: str, loss: str, caches, *, steps: int, size: str, needs: tuple[str, ...], data: str,
               student: str | None = None, meta: dict | None = None) -> Step:
        c = self.config
        lr = c.small_lr if size == "small" else c.lr
        checks = self._heldout_evals(size, choice="teacher_choice" in (meta or {}))
        return train_step(f"train-{arm}", self.run_dir(arm), caches=caches, student=student or c.student, loss=loss,
                          steps=steps, models_dir=c.models_dir, options=self._schedule(steps, lr, checks),
                          needs=(*needs, "cache-mbpp-references"),
                          meta={"model": arm, "size": size, "data": data, "lr": lr, "heldout_checks": 1 + checks,
                                **(meta or {})},
                          keep_checkpoints=False)

    def _heldout_evals(self, size: str, choice: bool) -> int:
        """Held-out points after the first: the pruned student's curve has them all, a full-size run
        and a teacher-choice run need only their last (question 3, the choice)."""
        c = self.config
        return c.choice_heldout_evals if choice else c.full_heldout_evals if size == "full" else c.heldout_evals

    def _schedule(self, steps: int, lr: float, heldout_evals: int) -> list[str]:
        """The same for every run of one kind: warmup, batching, held-out points, resume points, the probe, seed."""
        c = self.config
        held_out = min(0.5, c.heldout_examples / c.n_examples)
        return ["--lr", str(lr), "--warmup-steps", str(max(1, steps // 20)), "--grad-accum", str(c.grad_accum),
                "--max-batch-tokens", str(c.max_batch_tokens), "--eval-every", str(max(1, steps // heldout_evals)),
                "--checkpoint-every", str(max(1, steps // c.checkpoints)), "--keep-checkpoints", "1",
                "--eval-fraction", f"{held_out:.6g}",
                "--eval-max-examples", str(c.heldout_examples), "--heldout-per-sequence",
                "--probe-cache", str(self.references_cache), "--seed", str(c.seed),
                *c.distill_options.split()]

    def _scored(self, model: str, path: str, *, role: str, size: str, needs: tuple[str, ...] = (),
                splits: tuple[str, ...] = ("test", "train")) -> list[Step]:
        return [self._eval(f"eval-{model}-{split}-sampled", model, path, split, "sampled", role=role, needs=needs,
                           meta={"size": size}) for split in splits]

    def _eval(self, name: str, model: str, path: str, split: str, mode: str, *, role: str,
              needs: tuple[str, ...] = (), meta: dict | None = None, out: Path | None = None) -> Step:
        """A deciding or headline evaluation on this machine's CPU class (`out`: a data-making one,
        made once wherever it runs)."""
        c = self.config
        if out is None:
            name, out = eval_name(model, split, mode, self.cpu), self.eval_dir(model, split, mode)
            meta = {**(meta or {}), "cpu_class": self.cpu}
        sampled = mode == "sampled"
        options = dict(role=role, benchmarks=TEST if split == "test" else ("mbpp",), split=split,
                       backend=c.backend, limit=c.eval_limit or None, max_new_tokens=c.eval_max_new_tokens,
                       n_samples=c.eval_samples if sampled else 1, temperature=c.eval_temperature if sampled else 0.0,
                       seed=c.seed, trust_model_code=c.trust_model_code)
        return eval_step(name, out, path, models_dir=c.models_dir, needs=needs,
                         meta={"model": model, "role": role, "mode": mode, **(meta or {})}, **options)

    def _cache(self, name: str, out: Path, *, needs: tuple[str, ...] = (), model: str | None = None,
               meta: dict | None = None, **options) -> Step:
        """A cache of the teacher's (`model`: another one's, e.g. the pruned student's parent)."""
        c = self.config
        return cache_step(name, out, models_dir=c.models_dir, needs=needs, model=model or c.teacher,
                          backend=c.backend, student_tokenizer=c.student, teacher_template=c.template,
                          student_template="plain", k=c.k, seed=c.seed, meta=meta, **options)


def build_plan(config: GridV3Config, cpu: str | None = None) -> list[Step]:
    return GridV3(config, cpu).steps()


def eval_name(model: str, split: str, mode: str, cpu: str) -> str:
    """A deciding or headline evaluation's step name (EVAL_STEP reads it back)."""
    return f"eval-{model}-{split}-{mode}@{cpu}"


def _size(model: str) -> str:
    return "small" if model == "small" or model.startswith("small-") else "full"


def _eval_key(step: Step) -> tuple[str, str, str]:
    return step.meta["model"], step.meta["split"], step.meta["mode"]
