"""Every option of a distillation run, declared once; the CLI and config.json derive from it.

The loss and the batching are nested configs (`DistillConfig.loss`, `DistillConfig.batching`)
handed whole to the code that uses them; on the command line their fields are options of
`akd distill` like the others (common/settings.py flattens them). The capture settings
(teacher, k, templates, sampling) are not options: the trainer reads them from each cache's
manifest and records them in the run's config.json.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.settings import build_config, choice_problems, option_defaults, setting, unknown_options

from .errors import DistillConfigError
from .losses import LossConfig, LossInputError

DEFAULT_STUDENT = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
PRECISIONS = ("auto", "bf16", "float32")

# Options that may change between a run and its resumption without changing its result.
RESUME_NEUTRAL = ("eval_every", "checkpoint_every", "keep_checkpoints", "log_every", "progress", "plots",
                  "overwrite", "eval_max_examples", "probe_caches")


@dataclass(frozen=True)
class BatchingConfig:
    """How cache records become training batches (and which are held out for evaluation)."""

    max_batch_tokens: int = setting(512, "Token budget of one micro-batch per process, padding included.")
    max_batch_examples: int = setting(8, "Most examples in one micro-batch.")
    max_seq_len: int = setting(512, "Longer examples keep their prompt and a cut response (counted).")
    shuffle_buffer: int = setting(256, "Examples in each cache's shuffle buffer.")
    sort_pool: int = setting(32, "Examples sorted by length before packing into batches, to cut padding.")
    drop_length_truncated: bool = setting(False, "Drop the responses the teacher's token limit cut.")
    eval_fraction: float = setting(0.05, "Share of each cache held out for evaluation (by example id).")

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_examples", "max_seq_len", "shuffle_buffer", "sort_pool"):
            _at_least(1, name, getattr(self, name))
        if self.max_seq_len > self.max_batch_tokens:
            raise DistillConfigError(f"--max-seq-len {self.max_seq_len} exceeds --max-batch-tokens "
                                     f"{self.max_batch_tokens}: such an example could never be batched")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise DistillConfigError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass
class DistillConfig:
    """Defaults: the 0.5B Qwen2.5-Coder student, about 10 minutes of CPU training (150 steps
    of 512 tokens at ~3.3 s each with float32 master weights, bf16 autocast, fused AdamW, on a
    CPU that computes bf16 in hardware)."""

    caches: tuple[str, ...] = setting(help="A teacher cache (read-only); repeat to mix several.", flag="--cache")
    cache_weights: tuple[float, ...] = setting(
        (), "Sampling weight of each --cache, in the same order (positive, normalised); none: "
            "examples are drawn in proportion to the caches' sizes.", flag="--cache-weight")
    probe_caches: tuple[str, ...] = setting(
        (), "A cache that is only evaluated, never trained on: its first --eval-max-examples examples at "
            "every evaluation, as <metric>/probe-<folder>. Human-written answers scored by any teacher make a "
            "yardstick that stays the same whichever teacher made the training caches (its NLL is of their "
            "tokens); repeat for several.", flag="--probe-cache")
    run_dir: str = setting("runs/distill", "The run's folder: config, checkpoints, metrics, final/.")
    student: str = setting(DEFAULT_STUDENT, "Hub id or HF folder of the student.")
    loss: LossConfig = field(default_factory=LossConfig)
    # optimisation
    max_steps: int = setting(150, "Optimizer steps.")
    # 2e-5 took the 0.5B student from 55.5% to 18.9% HumanEval (2 examples per step, AdamW
    # moves every weight ~lr per step); 2e-6 took it to 61.0% with 2x lower held-out FKL.
    lr: float = setting(2e-6, "Peak learning rate (AdamW).")
    min_lr_ratio: float = setting(0.1, "The cosine schedule decays to lr x min-lr-ratio.")
    warmup_steps: int = setting(10, "Linear warmup steps.")
    weight_decay: float = setting(0.0, "AdamW weight decay (never on biases and norms).")
    beta1: float = setting(0.9, "AdamW beta1.")
    beta2: float = setting(0.95, "AdamW beta2.")
    grad_clip: float = setting(1.0, "Gradient norm clip; 0 disables clipping.")
    grad_accum: int = setting(1, "Micro-batches per optimizer step and process.")
    precision: str = setting(
        "auto", "Matmuls in bf16 (autocast; master weights stay float32) or float32; auto: bf16 on a "
                "GPU and on a CPU with AVX-512 BF16 or AMX, float32 on other CPUs (which emulate bf16, "
                "3-6x slower).", choices=PRECISIONS)
    gradient_checkpointing: bool = setting(False, "Recompute activations in backward to save memory.")
    # data
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    eval_max_examples: int = setting(64, "Held-out examples evaluated per cache.")
    heldout_per_sequence: bool = setting(False, "Also write every held-out sequence's FKL, RKL, NLL and top-1 "
                                                "agreement at each evaluation (heldout/ in the run folder), for "
                                                "paired intervals between runs; the slice is then scored one "
                                                "sequence at a time.")
    num_workers: int = setting(0, "Loader processes; 0 reads in the trainer (decoding is ~0.1% of a step).")
    # bookkeeping
    seed: int = setting(0, "Seed of the data order, the cache mix and torch.")
    eval_every: int = setting(50, "Evaluate on the held-out slices every N steps.")
    checkpoint_every: int = setting(50, "Write a checkpoint every N steps.")
    keep_checkpoints: int = setting(1, "Checkpoints kept (the newest).")
    log_every: int = setting(1, "Log the training statistics every N steps.")
    final_dtype: str = setting("bfloat16", "dtype of final/ (float32 keeps the master weights).",
                               choices=("bfloat16", "float16", "float32"))
    device: str = setting("auto", "Where to train.", choices=("auto", "cpu", "cuda"))
    threads: int = setting(0, "torch CPU threads; 0 leaves torch's default.")
    deterministic: bool = setting(False, "torch.use_deterministic_algorithms (bit-exact resume on CPU).")
    fsdp: bool = setting(False, "FSDP2 (fully_shard per decoder layer, then the root) instead of DDP.")
    progress: bool = setting(True, "Show a progress bar.")
    plots: bool = setting(True, "Write PNG plots of the metrics.")
    overwrite: bool = setting(False, "Wipe run-dir instead of resuming from it.")

    def __post_init__(self) -> None:
        self.caches = tuple(str(c) for c in self.caches)
        self.cache_weights = tuple(float(w) for w in self.cache_weights)
        self.probe_caches = tuple(str(c) for c in self.probe_caches)
        self.validate()

    @classmethod
    def from_options(cls, options: dict) -> "DistillConfig":
        """From flat option values keyed by field name, as the command line passes them
        (`kind` for --loss, `chunk_size` for --loss-chunk-size); unknown names are refused."""
        unknown = unknown_options(cls, options)
        if unknown:
            raise DistillConfigError(f"unknown distill option(s): {', '.join(unknown)}")
        try:
            return build_config(cls, options)
        except LossInputError as exc:
            raise DistillConfigError(str(exc)) from None

    def validate(self) -> None:
        if not self.caches:
            raise DistillConfigError("--cache: give at least one teacher cache")
        if len(set(self.caches)) != len(self.caches):
            raise DistillConfigError(f"--cache: a cache is given twice ({', '.join(self.caches)}); "
                                     "use --cache-weight to weigh it")
        if set(self.probe_caches) & set(self.caches) or len(set(self.probe_caches)) != len(self.probe_caches):
            raise DistillConfigError(f"--probe-cache: {', '.join(self.probe_caches)} must be distinct caches, none "
                                     "of them trained on (--cache)")
        if self.cache_weights and len(self.cache_weights) != len(self.caches):
            raise DistillConfigError(f"--cache-weight: {len(self.cache_weights)} weight(s) for "
                                     f"{len(self.caches)} cache(s); give one per --cache, or none")
        for weight in self.cache_weights:
            if not (math.isfinite(weight) and weight > 0):
                raise DistillConfigError(f"--cache-weight must be positive and finite, got {weight}")
        for name in ("max_steps", "grad_accum", "eval_every", "checkpoint_every", "keep_checkpoints", "log_every"):
            _at_least(1, name, getattr(self, name))
        for name in ("warmup_steps", "num_workers", "threads", "eval_max_examples"):
            _at_least(0, name, getattr(self, name))
        if not self.lr > 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise DistillConfigError(f"--lr must be > 0 and --min-lr-ratio in [0, 1] (got {self.lr}, {self.min_lr_ratio})")
        if self.grad_clip < 0:
            raise DistillConfigError(f"--grad-clip must be >= 0, got {self.grad_clip}")
        for problem in choice_problems(self)[:1]:  # the choices each field declares
            raise DistillConfigError(problem)
        if not isinstance(self.loss, LossConfig) or not isinstance(self.batching, BatchingConfig):
            raise DistillConfigError("loss and batching must be a LossConfig and a BatchingConfig")

    def to_dict(self) -> dict:
        """Nested, JSON-ready (tuples as lists): what config.json's `options` holds."""
        return _json_ready(asdict(self))

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)


def _at_least(low: int, name: str, value) -> None:
    if int(value) < low:
        relation = "be at least 1" if low == 1 else f"be >= {low}"
        raise DistillConfigError(f"--{name.replace('_', '-')} must {relation}, got {value}")


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def flat_options(options: dict, prefix: str = "") -> dict:
    """{"loss": {"mu": 0.5}} -> {"loss.mu": 0.5}: every setting under its dotted name."""
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(flat_options(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_difference(saved: dict, current: dict) -> str | None:
    """The first setting (dotted name, e.g. `loss.mu`) that differs between a saved run's
    options and this one's, or None. A setting the saved run does not name (added to akd since
    it began) reads as its default there."""
    saved, current = flat_options(saved), flat_options(current)
    defaults = {field.name: default for _, field, default in option_defaults(DistillConfig)}
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_NEUTRAL:
            continue
        if key not in saved and key.rpartition(".")[2] in defaults:  # a setting added since the run began
            saved[key] = defaults[key.rpartition(".")[2]]
        if saved.get(key) != current.get(key):
            return f"{key}: the run in place has {saved.get(key)!r}, this command has {current.get(key)!r}"
    return None


def nested_location() -> dict[str, str]:
    """Field name -> dotted name in the nested options (`mu` -> `loss.mu`), for every field."""
    where = {}
    for top in dataclasses.fields(DistillConfig):
        if top.name in ("loss", "batching"):
            inner = LossConfig if top.name == "loss" else BatchingConfig
            where.update({f.name: f"{top.name}.{f.name}" for f in dataclasses.fields(inner)})
        else:
            where[top.name] = top.name
    return where
