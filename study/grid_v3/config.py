"""What grid v3 compares and with what budget, in one record saved beside its outputs.

Grid v2 answered "no" at ~0.1M training tokens per arm; v3 spends its compute where a
difference is likeliest and tests it with more power: sampled pass@1 (several answers per
task at a temperature, a paired test on per-task rates), greedy kept as the headline. The
choices v2 made on non-test data are reused, not rerun: the teacher's template (plain, chosen
on MBPP's selection split) and AKD's lr (5e-6, chosen on held-out FKL and that split), both
recorded in results/experiment/report.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.settings import option_default, setting
from stages.distill.losses.config import LOSS_KINDS
from stages.evaluate.config import EvalConfig
from stages.evaluate.speed import SpeedConfig
from stages.teacher import TeacherCacheConfig
from study.engine.settings import ExperimentError, Revision, load_settings, split_list

CONFIG_FILE = "experiment.json"

# Changes decided from the grid's own results while it runs (study/engine/settings.py): the
# steps begun before one keep their commands, the rest take the new values (the defaults below).
REVISIONS = (
    Revision("r2", {"full_heldout_evals": (6, 1), "choice_heldout_evals": (6, 1)},
             "A full-size run's 7 held-out checks took ~27 of its ~65 minutes on the AVX-512 BF16 EPYC; its "
             "question (3) and the teacher choice compare the last point; the curve is the pruned student's."),
)


@dataclass(frozen=True)
class GridV3Config:
    out_dir: str = setting("experiments/v3", "Where every step writes.")
    keep_dir: str = setting("results/experiment/v3/grid", "Where each finished step's small outputs are copied "
                                                     "(commit it: a fresh clone resumes from it); empty: nowhere.")
    teacher: str = "qwen2.5-coder-1.5b-instruct"
    student: str = "qwen2.5-coder-0.5b-instruct"
    models_dir: str = "models"
    dataset: str = setting("data/code_alpaca_2k.json", "The instruction set the teacher answers.")
    template: str = setting("plain", "The teacher's prompt template (grid v2 chose plain on MBPP's selection "
                                     "split; reused).")
    first_row: int = setting(0, "First dataset row the teacher answers.")
    n_examples: int = setting(1000, "Dataset rows the teacher answers (the CodeAlpaca cache).")
    k: int = setting(option_default(TeacherCacheConfig, "k"), "Top-k entries cached per position.")
    cache_max_new_tokens: int = setting(384, "Longest teacher answer in the CodeAlpaca cache.")
    mbpp_weight: float = setting(0.5, "Sampling weight of the verified MBPP-train cache in the mixed arm "
                                      "(the CodeAlpaca cache gets 1 - it).")
    # training: every run of one student size gets the same steps and schedule
    lr: float = setting(5e-6, "The full-size student's lr (grid v2's choice for AKD).")
    full_steps: int = setting(300, "Optimizer steps of every full-size run.")
    full_losses: str = setting("ce,fkl,rkl,jsd", "Losses trained beside AKD on the CodeAlpaca cache, full-size "
                                                 "student (comma-separated; after the pruned student's arms).")
    small_mlp_keep: float = setting(0.75, "Width pruning: share of every MLP's neurons kept.")
    small_lr: float = setting(3e-5, "The pruned student's lr (it starts far below its teacher).")
    small_steps: int = setting(600, "Optimizer steps of every pruned-student run.")
    small_losses: str = setting("ce,fkl,rkl,akd", "Losses the pruned student trains with (comma-separated).")
    teacher_choice_steps: int = setting(100, "Optimizer steps of each short AKD run that picks the pruned "
                                             "student's teacher: its unpruned parent or the 1.5B.")
    grad_accum: int = setting(2, "Micro-batches per optimizer step.")
    max_batch_tokens: int = setting(512, "Tokens per micro-batch, padding included.")
    heldout_evals: int = setting(6, "Held-out fidelity points after the first in every pruned-student run "
                                     "(the recovery curve).")
    full_heldout_evals: int = setting(1, "Held-out fidelity points after the first in every full-size run (the "
                                         "last is what question 3's intervals compare).")
    choice_heldout_evals: int = setting(1, "Held-out points after the first in each short run that picks the "
                                           "pruned student's teacher (the choice compares the last).")
    checkpoints: int = setting(6, "Resume points per run: a stop loses at most the steps since the last.")
    heldout_examples: int = setting(128, "Held-out sequences scored at each point (the intervals' sample).")
    distill_options: str = setting("", "Extra `akd distill` options for every run, e.g. '--threads 2'.")
    seed: int = 0
    # evaluation: sampled pass@1 decides, greedy is the headline
    eval_samples: int = setting(5, "Answers per task in the deciding evaluations (pass@1 from c/n).")
    eval_temperature: float = setting(0.8, "Sampling temperature of the deciding evaluations.")
    greedy_headline: bool = setting(True, "Also score every model greedily on the test split (last).")
    eval_limit: int = setting(0, "Only the first N tasks of each benchmark (0 = all).")
    eval_max_new_tokens: int = setting(512, "Longest answer in every evaluation.")
    backend: str = setting("vllm", "Engine of the teacher cache and the evaluations.", choices=("vllm", "hf"))
    # decode speed (`akd speed`): what the pruned student's accuracy is kept at
    speed_prompts: int = setting(option_default(SpeedConfig, "prompts"), "HumanEval prompts each `akd speed` "
                                                                       "answers (teacher, student, pruned student).")
    speed_new_tokens: int = setting(option_default(SpeedConfig, "new_tokens"), "New tokens per prompt, exactly, "
                                                                             "in each `akd speed`.")
    trust_model_code: bool = setting(EvalConfig.trust_model_code, "Passed to every `akd eval` (see its --help).")

    def __post_init__(self):
        for name in ("n_examples", "k", "full_steps", "small_steps", "teacher_choice_steps", "grad_accum",
                     "max_batch_tokens", "heldout_evals", "full_heldout_evals", "choice_heldout_evals", "checkpoints",
                     "heldout_examples", "eval_samples", "speed_prompts", "speed_new_tokens",
                     "cache_max_new_tokens", "eval_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ExperimentError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.first_row < 0 or self.eval_limit < 0:
            raise ExperimentError("--first-row and --eval-limit must be >= 0")
        for name in ("lr", "small_lr", "eval_temperature"):
            if not getattr(self, name) > 0:
                raise ExperimentError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if not 0 < self.mbpp_weight < 1 or not 0 < self.small_mlp_keep <= 1:
            raise ExperimentError(f"--mbpp-weight must be in (0, 1) and --small-mlp-keep in (0, 1], got "
                                  f"{self.mbpp_weight} and {self.small_mlp_keep}")
        for name in ("full_losses", "small_losses"):
            unknown = [loss for loss in split_list(getattr(self, name)) if loss not in LOSS_KINDS]
            if unknown:
                raise ExperimentError(f"--{name.replace('_', '-')}: unknown loss {unknown[0]!r}; one of {', '.join(LOSS_KINDS)}")

    @property
    def root(self) -> Path:
        return Path(self.out_dir)


def load_config(out_dir) -> GridV3Config:
    return load_settings(GridV3Config, out_dir, CONFIG_FILE, "akd experiment v3 run", REVISIONS)
