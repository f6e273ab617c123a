"""What the experiment grid (version 2) compares, in one record saved beside its outputs.

List-valued settings are comma-separated strings so that every field is one CLI option
(pipeline/dataclass_options.py) and one line of experiment.json. The defaults are sized to
about 8 hours of a 2-core CPU machine (study/cost.py gives the estimate, step by step).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from common.settings import option_default, setting
from stages.evaluate.config import EvalConfig
from stages.teacher import RolloutConfig, TeacherCacheConfig
from study.engine.settings import ExperimentError, load_settings, save_or_check_settings, split_list

CONFIG_FILE = "experiment.json"
PLAIN = "plain"
MBPP_BASES = ("auto", "offpolicy", "onpolicy")


@dataclass(frozen=True)
class ExperimentConfig:
    out_dir: str = setting("experiments/v2", "Where every step writes (one folder per experiment).")
    keep_dir: str = setting("results/experiment/grid", "Where each finished step's small outputs are "
                                                       "copied (commit it: a fresh clone resumes the grid "
                                                       "from it); empty: nowhere.")
    teacher: str = "qwen2.5-coder-1.5b-instruct"
    student: str = "qwen2.5-coder-0.5b-instruct"
    models_dir: str = "models"
    dataset: str = "data/code_alpaca_2k.json"
    # the teacher's prompt: every candidate (plain included) on MBPP tasks outside the test split
    templates: str = setting("plain,enhanced,enhanced_user,enhanced_explained",
                             "Teacher templates compared on the selection split (comma-separated; "
                             "must include plain); the best one, plain included, makes the caches.")
    templates_file: str = ""
    selection_split: str = setting("selection", "MBPP split every choice is made on (never test).")
    # the off-policy cache
    n_examples: int = setting(500, "CodeAlpaca examples the teacher answers (rows 0..N-1); the "
                                   "on-policy rollouts answer the same prompts.")
    k: int = TeacherCacheConfig.k
    cache_max_new_tokens: int = 384
    # the training budget, computed once from the off-policy cache (study/budget.py)
    batch_sequences: int = setting(16, "Sequences per optimizer step, at least (gradient accumulation "
                                       "of --max-batch-tokens micro-batches).")
    max_batch_tokens: int = setting(512, "Tokens per micro-batch (padding included).")
    epochs: float = setting(1.0, "Passes over the off-policy cache's training slice, full-size student.")
    lr_sweep: str = setting("5e-6,1e-5,2e-5", "AKD off-policy lrs tried on the full-size student "
                                               "(comma-separated); chosen on held-out FKL and the "
                                               "selection split.")
    sweep_fraction: float = setting(0.34, "Length of each sweep run, as a fraction of the full budget.")
    lr_guard: float = setting(0.05, "An lr whose selection pass@1 is significantly below the best "
                                    "one's (McNemar p < this) is never chosen.")
    warmup_fraction: float = setting(0.05, "Linear warmup, as a fraction of a run's steps.")
    heldout_evals: int = setting(4, "Held-out FKL evaluations per run after the first (the recovery "
                                    "curve's points; a sweep run has only the first and last).")
    seed: int = 0
    distill_options: str = setting("", "Extra `akd distill` options for every run, e.g. '--threads 2'.")
    # the full-size student's arms
    losses: str = setting("ce,fkl,rkl", "Off-policy losses trained beside AKD at the chosen lr "
                                        "(comma-separated).")
    rollout_temperature: float = setting(option_default(RolloutConfig, "temperature"), "The student's sampling temperature "
                                                                    "in its on-policy rollouts.")
    onpolicy_weight: float = setting(0.5, "The mixed arm: sampling weight of the on-policy cache (the "
                                          "off-policy cache gets 1 - it).")
    mbpp_base: str = setting("auto", "The MBPP-train arm adds its cache to the off-policy or on-policy "
                                     "cache; auto: whichever AKD arm scored higher on MBPP train.",
                             choices=MBPP_BASES)
    mbpp_weight: float = setting(0.3, "The MBPP-train arm: sampling weight of the verified MBPP-train "
                                      "cache (the CodeAlpaca cache gets 1 - it).")
    # the smaller student: width-pruned, its own lr and a larger budget
    small_mlp_keep: float = setting(0.75, "Width pruning: fraction of every MLP's neurons kept "
                                          "(`akd prune --method width`).")
    small_losses: str = setting("fkl,rkl,akd", "Losses for the smaller student (empty: none).")
    small_lr: float = setting(1e-5, "The smaller student's lr (it starts far below its teacher).")
    small_epochs: float = setting(1.5, "Passes over the off-policy cache's training slice, smaller student.")
    small_midpoint_eval: str = setting("humaneval", "Benchmarks the smaller students are scored on at "
                                                    "half their budget (empty: none).")
    # evaluation
    eval_limit: int = setting(0, "Only the first N tasks of each benchmark (0 = all).")
    eval_max_new_tokens: int = 512
    backend: str = "vllm"
    # let `akd eval` run answers without the namespace jail (not root); not part of the record
    trust_model_code: bool = setting(EvalConfig.trust_model_code, "Passed to every `akd eval` step "
                                     "(see `akd eval --help`).")

    def __post_init__(self):
        if PLAIN not in self.template_names:
            raise ExperimentError(f"--templates must include {PLAIN!r}, got {self.templates!r}")
        if not self.lr_values:
            raise ExperimentError("--lr-sweep must name at least one lr")
        for name in ("n_examples", "k", "batch_sequences", "max_batch_tokens", "heldout_evals",
                     "cache_max_new_tokens", "eval_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ExperimentError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("epochs", "small_epochs", "small_lr"):
            if not getattr(self, name) > 0:
                raise ExperimentError(f"--{name.replace('_', '-')} must be > 0")
        for name in ("sweep_fraction", "onpolicy_weight", "mbpp_weight", "lr_guard"):
            if not 0 < getattr(self, name) <= 1 or (name.endswith("weight") and getattr(self, name) == 1):
                raise ExperimentError(f"--{name.replace('_', '-')} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.warmup_fraction < 1:
            raise ExperimentError(f"--warmup-fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 < self.small_mlp_keep <= 1:
            raise ExperimentError(f"--small-mlp-keep must be in (0, 1], got {self.small_mlp_keep}")
        if self.mbpp_base not in MBPP_BASES:
            raise ExperimentError(f"--mbpp-base must be one of {MBPP_BASES}, got {self.mbpp_base!r}")
        if self.eval_limit < 0:
            raise ExperimentError("--eval-limit must be >= 0")

    @property
    def template_names(self) -> list[str]:
        return split_list(self.templates)

    @property
    def lr_values(self) -> list[float]:
        try:
            return [float(v) for v in split_list(self.lr_sweep)]
        except ValueError:
            raise ExperimentError(f"--lr-sweep must be comma-separated numbers, got {self.lr_sweep!r}") from None

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def save_or_check_config(config: ExperimentConfig) -> None:
    """The first run records its settings; a later run with other settings is refused, since
    the outputs already made would silently mix two experiments."""
    save_or_check_settings(config, config.root / CONFIG_FILE)


def load_config(out_dir) -> ExperimentConfig:
    return load_settings(ExperimentConfig, out_dir, CONFIG_FILE, "akd experiment run")
