"""Every option of `akd rollout` in one dataclass, checked before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from common.settings import setting
from inference import BACKENDS

from .config import TeacherCacheConfig, TeacherConfigError


@dataclass
class RolloutConfig:
    """`akd rollout`'s settings: a model (usually the student) answers stage one's prompts."""

    model: str = setting(help="The model that answers: registry name, local HF folder or Hub id.")
    dataset: str = setting(help="Hub id, or a local .json/.jsonl/.parquet file (rows chosen as in "
                                "stage one).")
    out: str = setting(help="The responses directory (read by `akd teacher-cache --responses-from`).")
    backend: str = setting("vllm", "Inference engine.", choices=BACKENDS)
    revision: str | None = setting(None, "Model revision (Hub ids).")
    dtype: str = setting("auto", "Weights' dtype in the engine.")
    # dataset and its fields
    dataset_split: str = setting("train", "Dataset split (Hub datasets).", flag="--split")
    dataset_revision: str | None = setting(None, "Dataset revision (Hub datasets).")
    dataset_tag: str | None = setting(None, "Prefix of example ids; must match the scoring run's.")
    instruction_field: str = setting("instruction", "Column holding the instruction.")
    input_field: str | None = setting("input", "Column holding the optional input; empty: none.")
    offset: int = setting(0, "First dataset row to use.")
    limit: int | None = setting(None, "Rows to use from --offset (unset or 0: all).")
    # prompt and sampling
    template: str = setting("plain", "Prompt template the model answers under; score with the same "
                                     "--student-template.")
    templates_file: str | None = setting(None, "Extra prompt templates (JSON).")
    n: int = setting(4, "Samples per prompt.")
    temperature: float = setting(0.8, "Sampling temperature; 0 = greedy.")
    top_p: float = setting(1.0, "Nucleus sampling mass.")
    seed: int = setting(0, "Sampling seed.")
    max_new_tokens: int = setting(512, "Longest answer, in tokens.")
    max_model_len: int = setting(4096, "Engine context length: prompt + answer.")
    tensor_parallel_size: int = setting(1, "GPUs per vLLM engine.")
    # output
    overwrite: bool = setting(False, "Replace a responses folder made with other settings.")
    rows_per_shard: int = setting(256, "Responses per Parquet shard.")
    chunk_size: int = setting(128, "Prompts per generate call (the resume granularity).")
    hf_batch_size: int = setting(8, "Batch size of the HF backend.")
    progress: bool = setting(True, "Progress bars.")

    def __post_init__(self) -> None:
        self.input_field = self.input_field or None
        self.limit = self.limit or None
        self.out = str(self.out)

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
