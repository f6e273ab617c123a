"""Every option of `akd rollout` in one dataclass, checked before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from inference import BACKENDS

from .config import TeacherCacheConfig, TeacherConfigError


@dataclass
class RolloutConfig:
    model: str  # local folder or Hub id of the model that answers (usually the student)
    dataset: str  # Hub id, or a local .json/.jsonl/.parquet file (rows chosen as in stage one)
    out: str | Path  # the responses directory that `akd teacher-cache --responses-from` reads
    backend: str = "vllm"  # "vllm" or "hf"
    revision: str | None = None
    dtype: str = "auto"
    # dataset and its fields
    dataset_split: str = "train"
    dataset_revision: str | None = None
    dataset_tag: str | None = None  # prefix of example ids; must match the scoring run's
    instruction_field: str = "instruction"
    input_field: str | None = "input"  # None: the dataset has no input column
    offset: int = 0
    limit: int | None = None
    # prompt and sampling
    template: str = "plain"  # the prompt the model answers; score with --student-template equal to it
    templates_file: str | None = None
    n: int = 4  # samples per prompt
    temperature: float = 0.8
    top_p: float = 1.0
    seed: int = 0
    max_new_tokens: int = 512
    max_model_len: int = 4096
    tensor_parallel_size: int = 1
    # output
    overwrite: bool = False
    rows_per_shard: int = 256
    chunk_size: int = 128  # prompts per generate call: the resume granularity
    hf_batch_size: int = 8
    progress: bool = True

    def validate(self) -> None:
        def need(ok: bool, option: str, msg: str):
            if not ok:
                raise TeacherConfigError(f"--{option.replace('_', '-')}: {msg}")

        need(self.backend in BACKENDS, "backend", f"{self.backend!r} is not one of {BACKENDS}")
        need(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        need(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        need(self.temperature > 0 or self.n == 1, "n",
             f"greedy decoding (temperature 0) gives {self.n} identical samples; use n=1 or a temperature")
        need(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        need(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        need(self.max_model_len > self.max_new_tokens, "max_model_len",
             f"{self.max_model_len} leaves no room for a prompt with max_new_tokens={self.max_new_tokens}")
        need(self.offset >= 0, "offset", f"must be >= 0, got {self.offset}")
        need(self.limit is None or self.limit >= 0, "limit", f"must be >= 0, got {self.limit}")
        for name in ("rows_per_shard", "chunk_size", "hf_batch_size", "tensor_parallel_size"):
            need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        self.rows_config().validate()  # the dataset options, as stage one checks them

    def rows_config(self) -> TeacherCacheConfig:
        """Stage one's view of the dataset options: a rollout reads, checks and numbers rows
        exactly as stage one does, so its example ids are the scoring run's."""
        return TeacherCacheConfig(
            model=self.model, dataset=self.dataset, out_dir=self.out, dataset_split=self.dataset_split,
            dataset_revision=self.dataset_revision, dataset_tag=self.dataset_tag,
            instruction_field=self.instruction_field, input_field=self.input_field,
            output_field=None, offset=self.offset, limit=self.limit)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["out"] = str(data["out"])
        return data
