"""Every option of a distillation run, in one dataclass the CLI maps onto.

The capture settings (teacher, k, templates, sampling) are not options: the trainer
reads them from the cache's manifest and records them in the run's config.json.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import DistillConfigError
from .losses import LOSS_KINDS, LossConfig

DEFAULT_STUDENT = "Qwen/Qwen2.5-Coder-0.5B-Instruct"

# Options that may change between a run and its resumption without changing its result.
RESUME_NEUTRAL = ("eval_every", "checkpoint_every", "keep_checkpoints", "log_every", "progress", "plots",
                  "overwrite", "eval_max_examples")


@dataclass
class DistillConfig:
    """Defaults: the 0.5B Qwen2.5-Coder student, about 10 minutes of CPU training (150 steps
    of 512 tokens at ~3.3 s each with float32 master weights, bf16 autocast, fused AdamW)."""

    cache_dir: str = ""
    run_dir: str = "runs/distill"
    student: str = DEFAULT_STUDENT  # Hub id or HF folder
    # loss (see stages/distill/losses): flat for the CLI, defaults owned by LossConfig
    loss: str = LossConfig.kind
    mu: float = LossConfig.mu
    alpha: float = LossConfig.alpha
    beta: float = LossConfig.beta
    ce_weight: float = LossConfig.ce_weight
    temperature: float = LossConfig.temperature
    loss_chunk_size: int = LossConfig.chunk_size
    # optimisation
    max_steps: int = 150
    # 2e-5 took the 0.5B student from 55.5% to 18.9% HumanEval (2 examples per step, AdamW
    # moves every weight ~lr per step); 2e-6 took it to 61.0% with 2x lower held-out FKL.
    lr: float = 2e-6
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 10
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    bf16: bool = True  # bf16 autocast; master weights stay float32
    gradient_checkpointing: bool = False
    # data
    max_batch_tokens: int = 512  # per micro-batch, padding included
    max_batch_examples: int = 8
    max_seq_len: int = 512  # longer examples keep their prompt and a cut response (counted)
    shuffle_buffer: int = 256
    sort_pool: int = 32  # examples sorted by length before packing, to cut padding
    drop_length_truncated: bool = False  # drop responses the teacher's token limit cut
    eval_fraction: float = 0.05
    eval_max_examples: int = 64
    num_workers: int = 0  # loader processes; 0 reads in the trainer (decoding is ~0.1% of a step)
    # bookkeeping
    seed: int = 0
    eval_every: int = 50
    checkpoint_every: int = 50
    keep_checkpoints: int = 1
    log_every: int = 1
    final_dtype: str = "bfloat16"  # dtype of final/ ("float32" keeps the master weights)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    deterministic: bool = False  # torch.use_deterministic_algorithms (bit-exact resume on CPU)
    fsdp: bool = False  # FSDP2 (fully_shard per decoder layer, then the root) instead of DDP
    progress: bool = True
    plots: bool = True
    overwrite: bool = False  # wipe run_dir instead of resuming from it

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.loss not in LOSS_KINDS:
            raise DistillConfigError(f"--loss {self.loss!r} is not one of {LOSS_KINDS}")
        for name in ("max_steps", "grad_accum", "max_batch_tokens", "max_batch_examples", "max_seq_len",
                     "shuffle_buffer", "sort_pool", "eval_every", "checkpoint_every", "keep_checkpoints",
                     "log_every", "loss_chunk_size"):
            if int(getattr(self, name)) < 1:
                raise DistillConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "threads", "eval_max_examples"):
            if int(getattr(self, name)) < 0:
                raise DistillConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.max_seq_len > self.max_batch_tokens:
            raise DistillConfigError(f"--max-seq-len {self.max_seq_len} exceeds --max-batch-tokens "
                                     f"{self.max_batch_tokens}: such an example could never be batched")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise DistillConfigError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if not self.lr > 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise DistillConfigError(f"--lr must be > 0 and --min-lr-ratio in [0, 1] (got {self.lr}, {self.min_lr_ratio})")
        if self.grad_clip < 0:
            raise DistillConfigError(f"--grad-clip must be >= 0, got {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise DistillConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.final_dtype not in ("bfloat16", "float16", "float32"):
            raise DistillConfigError(f"--final-dtype must be bfloat16, float16 or float32, got {self.final_dtype!r}")
        self.loss_config()  # the loss validates its own options

    def loss_config(self) -> LossConfig:
        try:
            return LossConfig(kind=self.loss, mu=self.mu, alpha=self.alpha, beta=self.beta,
                              ce_weight=self.ce_weight, temperature=self.temperature,
                              chunk_size=self.loss_chunk_size)
        except ValueError as exc:
            raise DistillConfigError(str(exc)) from None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DistillConfigError(f"unknown distill option(s): {', '.join(unknown)}")
        return cls(**data)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)


def resume_difference(saved: dict, current: dict) -> str | None:
    """The first option that differs between a saved run's config and this one, or None."""
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_NEUTRAL:
            continue
        if saved.get(key) != current.get(key):
            return f"{key}: the run in place has {saved.get(key)!r}, this command has {current.get(key)!r}"
    return None
