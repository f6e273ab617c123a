"""Every option of stage one in one dataclass, checked before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from inference import BACKENDS


class TeacherConfigError(ValueError):
    """An option of the teacher stage that cannot work; the message names the option."""


@dataclass
class TeacherCacheConfig:
    model: str  # local folder or Hub id of the teacher
    dataset: str  # Hub id, or a local .json/.jsonl/.parquet file
    out_dir: str | Path
    backend: str = "vllm"  # "vllm" or "hf"
    revision: str | None = None  # teacher model revision (Hub)
    dtype: str = "auto"
    student_tokenizer: str | None = None  # must match the teacher's; renders the student prompt
    # dataset and its fields
    dataset_split: str = "train"
    dataset_revision: str | None = None
    dataset_tag: str | None = None  # prefix of example ids; default: the file stem / Hub name
    instruction_field: str = "instruction"
    input_field: str | None = "input"  # None: the dataset has no input column
    output_field: str | None = "output"  # reference answer; checked to exist, recorded, not used
    # row selection
    offset: int = 0
    limit: int | None = None
    num_workers: int = 1
    worker_index: int = 0
    # prompts
    teacher_template: str = "enhanced"
    student_template: str = "plain"
    templates_file: str | Path | None = None
    # sampling and cache
    k: int = 20
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    n: int = 1  # samples per prompt
    # score mode: a dataset column of answers, or a responses file of `akd rollout`; the teacher
    # scores those responses (top-k at every position) instead of generating. None: generate.
    responses_from: str | None = None
    max_new_tokens: int = 512
    max_model_len: int = 4096
    tensor_parallel_size: int = 1
    overwrite: bool = False
    rows_per_shard: int = 256
    encoding: str | None = None  # cache encoding spec (cache_schema); None: its default
    chunk_size: int = 128  # prompts per generate call: the resume granularity
    hf_batch_size: int = 8
    progress: bool = True

    def validate(self) -> None:
        def need(ok: bool, option: str, msg: str):
            if not ok:
                raise TeacherConfigError(f"--{option.replace('_', '-')}: {msg}")

        need(self.backend in BACKENDS, "backend", f"{self.backend!r} is not one of {BACKENDS}")
        need(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        need(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        need(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        need(self.temperature > 0 or self.n == 1, "n",
             f"greedy decoding (temperature 0) gives {self.n} identical samples; use n=1 or a temperature")
        need(not self.responses_from or self.n == 1, "n", "score mode (--responses-from) scores "
             "the given responses, one per example id; leave n at 1")
        need(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        need(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        need(self.max_model_len > self.max_new_tokens, "max_model_len",
             f"{self.max_model_len} leaves no room for a prompt with max_new_tokens={self.max_new_tokens}")
        need(self.offset >= 0, "offset", f"must be >= 0, got {self.offset}")
        need(self.limit is None or self.limit >= 0, "limit", f"must be >= 0, got {self.limit}")
        need(self.num_workers >= 1, "num_workers", f"must be >= 1, got {self.num_workers}")
        need(0 <= self.worker_index < self.num_workers, "worker_index",
             f"{self.worker_index} is outside 0..{self.num_workers - 1}")
        need(self.rows_per_shard >= 1, "rows_per_shard", f"must be >= 1, got {self.rows_per_shard}")
        need(self.chunk_size >= 1, "chunk_size", f"must be >= 1, got {self.chunk_size}")
        need(self.hf_batch_size >= 1, "hf_batch_size", f"must be >= 1, got {self.hf_batch_size}")
        need(self.tensor_parallel_size >= 1, "tensor_parallel_size",
             f"must be >= 1, got {self.tensor_parallel_size}")
        need(bool(self.instruction_field), "instruction_field", "must be a column name")
        need(self.dataset_tag is None or (self.dataset_tag and ":" not in self.dataset_tag),
             "dataset_tag", f"{self.dataset_tag!r} must be non-empty and contain no ':'")

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("out_dir", "templates_file"):
            data[key] = None if data[key] is None else str(data[key])
        return data
