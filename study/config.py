"""What the experiment grid compares, in one record that is saved beside its outputs.

List-valued settings are comma-separated strings so that every field is one CLI option
(pipeline/dataclass_options.py) and one line of experiment.json.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from common.settings import setting
from stages.distill.config import DistillConfig
from stages.evaluate.config import EvalConfig
from stages.teacher.config import TeacherCacheConfig

CONFIG_FILE = "experiment.json"
UNCOMPARED = ("trust_model_code",)  # may differ between runs of one grid: no output depends on it
PLAIN = "plain"


class ExperimentError(ValueError):
    """A setting or an output folder the grid cannot work with."""


@dataclass(frozen=True)
class ExperimentConfig:
    out_dir: str = setting("experiments/default", "Where every step writes (one folder per experiment).")
    teacher: str = "qwen2.5-coder-1.5b-instruct"
    student: str = "qwen2.5-coder-0.5b-instruct"
    models_dir: str = "models"
    dataset: str = "data/code_alpaca_2k.json"
    # step 0: teacher templates compared on MBPP tasks outside the test split
    templates: str = setting("plain,enhanced,enhanced_user,enhanced_explained",
                             "Teacher templates compared in step 0 (comma-separated; must include plain).")
    templates_file: str = ""
    selection_split: str = "selection"
    # step 1: two caches of the same examples
    n_examples: int = 1000
    k: int = TeacherCacheConfig.k
    cache_max_new_tokens: int = 384
    # step 2: students; every run of one student size gets the same budget
    enhanced_losses: str = setting("ce,fkl,rkl,akd", "Losses trained on the enhanced cache (comma-separated).")
    plain_losses: str = setting("akd", "Losses trained on the plain cache (empty: no plain cache).")
    pruned_losses: str = setting("fkl,rkl,akd", "Losses for the depth-pruned student (empty: no pruned student).")
    prune_every: int = 2
    # a half-depth student starts broken (it babbles); healing it needs a far larger step
    # than fine-tuning an intact one, so its runs share their own lr
    pruned_lr: float = setting(5e-5, "The pruned student's lr (it starts broken and needs a larger step).")
    max_steps: int = 200
    lr: float = DistillConfig.lr
    seed: int = 0
    distill_options: str = setting("", "Extra `akd distill` options, e.g. '--max-batch-tokens 1024'.")
    # step 3: evaluation
    benchmarks: str = "humaneval,mbpp"
    eval_limit: int = setting(0, "Only the first N tasks of each benchmark (0 = all).")
    eval_max_new_tokens: int = 512
    backend: str = "vllm"
    # let `akd eval` run answers without the namespace jail (not root); not part of the record
    trust_model_code: bool = setting(EvalConfig.trust_model_code, "Passed to every `akd eval` step "
                                     "(see `akd eval --help`).")

    def __post_init__(self):
        for name in ("templates", "enhanced_losses", "benchmarks"):
            if not split_list(getattr(self, name)):
                raise ExperimentError(f"--{name.replace('_', '-')} must name at least one value")
        if PLAIN not in self.template_names or len(self.template_names) < 2:
            raise ExperimentError(f"--templates must include {PLAIN!r} and at least one candidate "
                                  f"enhanced template, got {self.templates!r}")
        for name in ("n_examples", "k", "max_steps", "prune_every"):
            if getattr(self, name) < 1:
                raise ExperimentError(f"--{name.replace('_', '-')} must be >= 1")

    @property
    def template_names(self) -> list[str]:
        return split_list(self.templates)

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def save_or_check_config(config: ExperimentConfig) -> None:
    """The first run records its settings; a later run with other settings is refused, since
    the outputs already made would silently mix two experiments."""
    save_or_check_settings(config, config.root / CONFIG_FILE)


def save_or_check_settings(config, path: Path, what: str = "grid") -> None:
    """Record a frozen settings dataclass (with `out_dir`) in `path`, or refuse one that
    differs from the record, naming the first difference. A setting added since the record
    was written reads as its default there."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        return
    defaults = dataclasses.asdict(type(config)(out_dir=config.out_dir))
    saved = {**defaults, **json.loads(path.read_text())}  # settings added since keep their default
    changed = [f"{key}: the {what} in place has {saved.get(key)!r}, this command has {value!r}"
               for key, value in dataclasses.asdict(config).items()
               if key not in UNCOMPARED and saved.get(key) != value]
    if changed:
        raise ExperimentError(f"{path}: {changed[0]}" + (f" (and {len(changed) - 1} more)"
                              if len(changed) > 1 else "") + "; use another --out-dir or delete it")


def load_settings(cls, out_dir, file_name: str, command: str):
    """The settings a run recorded in OUT_DIR/file_name (fields added since keep their default)."""
    path = Path(out_dir) / file_name
    if not path.exists():
        raise ExperimentError(f"{path} does not exist: no `{command}` has been started in {out_dir}")
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in fields})


def load_config(out_dir) -> ExperimentConfig:
    return load_settings(ExperimentConfig, out_dir, CONFIG_FILE, "akd experiment run")
