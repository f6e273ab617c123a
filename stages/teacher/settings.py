"""The settings `akd teacher-cache` and `akd rollout` share, declared once, each group with
its own checks. Both configs nest these groups (config.py, rollout_config.py); a command
that needs other defaults (a rollout samples n=4 at 0.8) nests an instance with them, and
its options show those defaults (common/settings.py)."""
from __future__ import annotations

from dataclasses import dataclass

from common.settings import setting
from inference import BACKENDS


class TeacherConfigError(ValueError):
    """An option of the teacher stage that cannot work; the message names the option."""


def need(ok: bool, option: str, msg: str) -> None:
    """Refuse a setting with a one-line error that names its option."""
    if not ok:
        raise TeacherConfigError(f"--{option.replace('_', '-')}: {msg}")


def need_positive(settings, *names: str) -> None:
    for name in names:
        need(getattr(settings, name) >= 1, name, f"must be >= 1, got {getattr(settings, name)}")


@dataclass
class EngineSettings:
    """The inference engine that answers (or scores)."""

    backend: str = setting("vllm", "Inference engine.", choices=BACKENDS)
    revision: str | None = setting(None, "Model revision (Hub ids).")
    dtype: str = setting("auto", "Weights' dtype in the engine.")
    max_model_len: int = setting(4096, "Engine context length: prompt + answer.")
    tensor_parallel_size: int = setting(1, "GPUs per vLLM engine.")
    hf_batch_size: int = setting(8, "Batch size of the HF backend.")

    def validate(self) -> None:
        need(self.backend in BACKENDS, "backend", f"{self.backend!r} is not one of {BACKENDS}")
        need_positive(self, "hf_batch_size", "tensor_parallel_size")


@dataclass
class DatasetSettings:
    """Which dataset rows become prompts, and from which columns. Row i is always example
    "<tag>:<i>:<sample>", so a rollout and the run that scores it agree on ids."""

    dataset: str = setting(help="Hub id, or a local .json/.jsonl/.parquet file (optionally .gz).")
    dataset_split: str = setting("train", "Dataset split (Hub datasets).", flag="--split")
    dataset_revision: str | None = setting(None, "Dataset revision (Hub datasets).")
    dataset_tag: str | None = setting(None, "Prefix of example ids; default: the file stem or Hub "
                                            "name. A rollout's must match its scoring run's.")
    instruction_field: str = setting("instruction", "Column holding the instruction.")
    input_field: str | None = setting("input", "Column holding the optional input; empty: none.")
    offset: int = setting(0, "First dataset row to use.")
    limit: int | None = setting(None, "Rows to use from --offset (unset or 0: all).")

    def __post_init__(self) -> None:
        # the command line says "none" with an empty column name and "all" with limit 0
        self.input_field = self.input_field or None
        self.limit = self.limit or None

    def validate(self) -> None:
        need(self.offset >= 0, "offset", f"must be >= 0, got {self.offset}")
        need(self.limit is None or self.limit >= 0, "limit", f"must be >= 0, got {self.limit}")
        need(bool(self.instruction_field), "instruction_field", "must be a column name")
        need(self.dataset_tag is None or (self.dataset_tag and ":" not in self.dataset_tag),
             "dataset_tag", f"{self.dataset_tag!r} must be non-empty and contain no ':'")


@dataclass
class SamplingSettings:
    """How answers are sampled; sample s of row r uses seed + r*n + s."""

    temperature: float = setting(0.0, "Sampling temperature; 0 = greedy.")
    top_p: float = setting(1.0, "Nucleus sampling mass.")
    seed: int = setting(0, "Sampling seed.")
    n: int = setting(1, "Samples per prompt.")
    max_new_tokens: int = setting(512, "Longest answer, in tokens (longer ones are marked cut).")

    def validate(self) -> None:
        need(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        need(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        need(self.temperature > 0 or self.n == 1, "n",
             f"greedy decoding (temperature 0) gives {self.n} identical samples; use n=1 or a temperature")
        need(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        need(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")

    def check_fits(self, engine: EngineSettings) -> None:
        """A prompt must fit beside the longest answer in the engine's context."""
        need(engine.max_model_len > self.max_new_tokens, "max_model_len",
             f"{engine.max_model_len} leaves no room for a prompt with "
             f"max_new_tokens={self.max_new_tokens}")


@dataclass
class ShardSettings:
    """How the output (a cache or a responses folder) is written and resumed."""

    overwrite: bool = setting(False, "Replace an output (cache or responses folder) made with "
                                     "other settings.")
    rows_per_shard: int = setting(128, "Rows (examples or responses) per Parquet shard.")
    chunk_size: int = setting(64, "Prompts per generate call: the resume granularity.")
    progress: bool = setting(True, "Progress bars.")

    def validate(self) -> None:
        need_positive(self, "rows_per_shard", "chunk_size")
