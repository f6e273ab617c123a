"""Rounds of offline on-policy distillation, as a plan of steps that study/runner.py runs.

Round r (1..R): the current student answers its own slice of the dataset (`akd rollout`),
the teacher scores those answers (`akd teacher-cache --responses-from`, a separate process
started after the student's engine is gone), and the student trains on that cache (`akd
distill`, optionally mixed with an off-policy teacher cache by GKD's lambda). Round r+1
starts from round r's `final/`. Nothing is ever shared in memory: the cache on disk is the
hand-over, as between the two stages of the offline pipeline.

Every round keeps its folders under OUT_DIR/round-r/: rollouts/ (the student's answers),
cache/ (the teacher's top-k over them), run/<student>-<loss>/ (the distill run: metrics,
plots, final/; round r > 1's student is the previous final/, so its run is
run/final-<loss>) and, with --eval, eval/. Each step's arguments are built from the stage's
own config class (common.settings.to_cli_args), so a stage's default is never retyped here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.settings import option_default, setting, to_cli_args
from inference import BACKENDS
from stages.distill.config import DistillConfig
from stages.distill.losses.config import LOSS_KINDS, LossConfig
from stages.distill.run_folder import CHECKPOINTS_DIR, FINAL_DIR, run_path
from stages.teacher import ResponsesFile, ResponsesFileError, RolloutConfig, TeacherCacheConfig
from study.engine.settings import ExperimentError, load_settings, save_or_check_settings, split_list
from study.engine.steps import Step, cache_is_whole, eval_is_whole, run_is_whole

CONFIG_FILE = "onpolicy.json"
LOG_FILE = "onpolicy.log"
COMMAND = "akd onpolicy run"


@dataclass(frozen=True)
class OnPolicyConfig:
    """The rounds' settings, saved in OUT_DIR/onpolicy.json; a rerun with others is refused.

    Defaults: the real 1.5B teacher and 0.5B student on this CPU machine, an estimated 20-26
    minutes a round (README, "Offline on-policy distillation", gives the arithmetic)."""

    out_dir: str = setting("onpolicy/default", "Where every round writes (round-1/, round-2/, ...).")
    teacher: str = "qwen2.5-coder-1.5b-instruct"
    student: str = setting("qwen2.5-coder-0.5b-instruct", "The student of round 1.")
    models_dir: str = "models"
    dataset: str = "data/code_alpaca_2k.json"
    rounds: int = setting(2, "Rounds: rollout, teacher scoring, training, each from the last student.")
    prompts: int = setting(320, "Dataset rows per round; round r uses rows "
                                "first_row + (r-1)*prompts onwards, so no round reuses a prompt.")
    first_row: int = setting(0, "First dataset row of round 1.")
    # rollouts: n samples at a temperature; one sample of many prompts covers more ground
    n: int = setting(1, "Student samples per prompt.")
    temperature: float = setting(option_default(RolloutConfig, "temperature"), "The student's sampling temperature.")
    max_new_tokens: int = setting(384, "Longest rollout answer (tokens); prompt + answer should fit "
                                       "distill's --max-seq-len.")
    student_template: str = setting(RolloutConfig.template, "Prompt template the student answers "
                                                            "under (and trains on).")
    # teacher scoring
    teacher_template: str = setting(TeacherCacheConfig.teacher_template,
                                    "Prompt template the teacher scores the answers under.")
    k: int = setting(TeacherCacheConfig.k, "Top-k entries the teacher's cache keeps per position.")
    # training
    steps: int = setting(DistillConfig.max_steps, "Distill steps per round.")
    lr: float = setting(DistillConfig.lr, "Distill learning rate, every round.")
    loss: str = setting(LossConfig.kind, "Distill loss, every round.", choices=LOSS_KINDS)
    offpolicy_cache: str = setting("", "An off-policy teacher cache (e.g. `make teacher-cache`'s) "
                                       "mixed into every round's training; empty: none.")
    onpolicy_fraction: float = setting(0.5, "GKD's lambda: with --offpolicy-cache, the weight of the "
                                            "round's on-policy cache; the off-policy cache gets 1 - it.")
    distill_options: str = setting("", "Extra `akd distill` options, e.g. '--max-batch-tokens 1024'.")
    seed: int = 0
    # evaluation of the round-0 student and of every round's student
    eval: bool = setting(False, "Evaluate (pass@1) the original student and each round's student.")
    benchmarks: str = "humaneval,mbpp"
    eval_limit: int = setting(0, "Only the first N tasks of each benchmark (0 = all).")
    backend: str = setting(option_default(RolloutConfig, "backend"), "Engine of rollouts, scoring and evaluation.",
                           choices=BACKENDS)

    def __post_init__(self):
        for name in ("rounds", "prompts", "n", "k", "steps", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ExperimentError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.first_row < 0 or self.eval_limit < 0:
            raise ExperimentError("--first-row and --eval-limit must be >= 0")
        if self.offpolicy_cache and not 0 < self.onpolicy_fraction < 1:
            raise ExperimentError(f"--onpolicy-fraction must be in (0, 1) to mix in --offpolicy-cache, "
                                  f"got {self.onpolicy_fraction}")
        if self.eval and not split_list(self.benchmarks):
            raise ExperimentError("--benchmarks must name at least one benchmark with --eval")
        self.distill_config(self.student, "round-cache")  # the training options are checked now

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    def distill_config(self, student: str, round_cache) -> DistillConfig:
        """The stage's own config for a round's training: the round's cache, mixed with the
        off-policy cache (GKD's lambda = onpolicy_fraction) when one is given."""
        caches, weights = (str(round_cache),), ()
        if self.offpolicy_cache:
            caches += (self.offpolicy_cache,)
            weights = (self.onpolicy_fraction, round(1 - self.onpolicy_fraction, 12))
        return DistillConfig(caches=caches, cache_weights=weights, student=student,
                             loss=LossConfig(kind=self.loss), max_steps=self.steps, lr=self.lr,
                             seed=self.seed)


@dataclass(frozen=True)
class Round:
    """Round r's folders and the student it starts from."""

    number: int
    folder: Path
    student: str  # round 1: the configured student; later: the previous round's final/
    offset: int
    loss: str

    @property
    def rollouts(self) -> Path:
        return self.folder / "rollouts"

    @property
    def cache(self) -> Path:
        return self.folder / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.folder / "run"

    @property
    def run(self) -> Path:
        return run_path(self.runs_dir, self.student, self.loss)

    @property
    def final(self) -> Path:
        return self.run / FINAL_DIR

    @property
    def eval_dir(self) -> Path:
        return self.folder / "eval"


def rounds_of(config: OnPolicyConfig) -> list[Round]:
    rounds, student = [], config.student
    for r in range(1, config.rounds + 1):
        this = Round(r, config.root / f"round-{r}", student,
                     config.first_row + (r - 1) * config.prompts, config.loss)
        rounds.append(this)
        student = str(this.final)
    return rounds


def original_eval_dir(config: OnPolicyConfig) -> Path:
    return config.root / "round-0" / "eval"


# ---- each step's command, from the stages' config classes ----

def rollout_config(config: OnPolicyConfig, round_: Round) -> RolloutConfig:
    return RolloutConfig.from_options(dict(
        model=round_.student, dataset=config.dataset, out=str(round_.rollouts),
        backend=config.backend, offset=round_.offset, limit=config.prompts,
        template=config.student_template, n=config.n, temperature=config.temperature,
        seed=config.seed, max_new_tokens=config.max_new_tokens))


def score_config(config: OnPolicyConfig, round_: Round) -> TeacherCacheConfig:
    return TeacherCacheConfig.from_options(dict(
        model=config.teacher, dataset=config.dataset, out_dir=str(round_.cache),
        backend=config.backend, student_tokenizer=round_.student, offset=round_.offset,
        limit=config.prompts, teacher_template=config.teacher_template,
        student_template=config.student_template, k=config.k, seed=config.seed,
        responses_from=str(round_.rollouts), max_new_tokens=config.max_new_tokens))


def rollout_args(config: OnPolicyConfig, round_: Round) -> list[str]:
    return ["rollout", *to_cli_args(rollout_config(config, round_)), "--models-dir", config.models_dir]


def score_args(config: OnPolicyConfig, round_: Round) -> list[str]:
    return ["teacher-cache", *to_cli_args(score_config(config, round_)),
            "--models-dir", config.models_dir]


def distill_args(config: OnPolicyConfig, round_: Round) -> list[str]:
    """`akd distill` on the round's cache; with an off-policy cache, both caches and their
    weights (`--cache` repeated, `--cache-weight` in the same order)."""
    options = to_cli_args(config.distill_config(round_.student, round_.cache),
                          skip=("student", "kind", "run_dir"))
    return ["distill", "--student", round_.student, "--loss", round_.loss,
            "--runs-dir", str(round_.runs_dir), "--models-dir", config.models_dir, *options,
            *config.distill_options.split()]


def cache_args(caches: list[str], weights=None) -> list[str]:
    """`akd distill`'s mix: `--cache` repeated, then (if given) `--cache-weight` in the same
    order, each written to 12 digits (1 - 0.7 reads 0.3, not 0.30000000000000004)."""
    args = [arg for cache in caches for arg in ("--cache", str(cache))]
    if weights is not None:
        if len(weights) != len(caches):
            raise ExperimentError(f"{len(weights)} cache weight(s) for {len(caches)} cache(s)")
        args += [arg for w in weights for arg in ("--cache-weight", str(round(w, 12)))]
    return args


def eval_args(config: OnPolicyConfig, model: str, out: Path) -> list[str]:
    args = ["eval", "--model", model, "--out", str(out), "--models-dir", config.models_dir,
            "--backend", config.backend]
    if config.eval_limit:
        args += ["--limit", str(config.eval_limit)]
    return args + [arg for b in split_list(config.benchmarks) for arg in ("--benchmark", b)]


# ---- the plan ----

def build_rounds(config: OnPolicyConfig) -> list[Step]:
    """Every round's steps in order; each needs the one before it (round r+1's rollout needs
    round r's training), so a failure stops the rounds after it, nothing else."""
    steps: list[Step] = []
    benchmarks = split_list(config.benchmarks)
    if config.eval:
        out = original_eval_dir(config)
        steps.append(Step("eval-round-0", "eval", out, command=lambda: eval_args(config, config.student, out),
                          verify=lambda: eval_is_whole(out, benchmarks, "test"),
                          meta={"round": 0, "model": config.student}))
    previous: tuple[str, ...] = ()
    for round_ in rounds_of(config):
        r, meta = round_.number, {"round": round_.number, "student": round_.student}
        steps.append(Step(f"rollout-{r}", "rollout", round_.rollouts, needs=previous,
                          command=lambda x=round_: rollout_args(config, x),
                          verify=lambda x=round_: responses_are_whole(x.rollouts), meta=meta))
        steps.append(Step(f"score-{r}", "cache", round_.cache, needs=(f"rollout-{r}",),
                          command=lambda x=round_: score_args(config, x),
                          verify=lambda x=round_: cache_is_whole(x.cache), meta=meta))
        steps.append(Step(f"train-{r}", "train", round_.run, needs=(f"score-{r}",),
                          command=lambda x=round_: distill_args(config, x),
                          verify=lambda x=round_: run_is_whole(x.run, config.steps),
                          meta={**meta, "run_dir": str(round_.run)},
                          disposable=(round_.run / CHECKPOINTS_DIR,)))
        previous = (f"train-{r}",)
        if config.eval:
            steps.append(Step(f"eval-{r}", "eval", round_.eval_dir, needs=previous,
                              command=lambda x=round_: eval_args(config, str(x.final), x.eval_dir),
                              verify=lambda x=round_: eval_is_whole(x.eval_dir, benchmarks, "test"),
                              meta=meta))
    return steps


def responses_are_whole(folder: Path) -> bool:
    try:
        ResponsesFile(folder)
    except ResponsesFileError:
        return False
    return True


def check_rows_fit(config: OnPolicyConfig) -> None:
    """Refuse rounds that would run past the dataset's end (an empty round trains on nothing)."""
    from stages.teacher.rows import open_dataset

    score = score_config(config, rounds_of(config)[-1])
    dataset, _, _ = open_dataset(score.data, score.output_field, score.skip_bad_lines)
    needed = config.first_row + config.rounds * config.prompts
    if needed > len(dataset):
        raise ExperimentError(
            f"--rounds {config.rounds} x --prompts {config.prompts} from --first-row "
            f"{config.first_row} needs {needed} rows; {config.dataset} has {len(dataset)}")


def save_or_check_config(config: OnPolicyConfig) -> None:
    save_or_check_settings(config, config.root / CONFIG_FILE, what="run")


def load_config(out_dir) -> OnPolicyConfig:
    return load_settings(OnPolicyConfig, out_dir, CONFIG_FILE, COMMAND)
