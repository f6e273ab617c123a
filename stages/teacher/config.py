"""Every option of stage one in one dataclass, checked before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from common.settings import setting
from inference import BACKENDS


class TeacherConfigError(ValueError):
    """An option of the teacher stage that cannot work; the message names the option."""


@dataclass
class TeacherCacheConfig:
    """Stage one's settings; `akd teacher-cache` takes its options from these fields."""

    model: str = setting(help="Teacher: registry name (built on first use), local HF folder or Hub id.",
                         flag="--teacher")
    dataset: str = setting(help="Hub id, or a local .json/.jsonl/.parquet file (optionally .gz).")
    out_dir: str = setting(help="The cache directory.", flag="--out")
    backend: str = setting("vllm", "Inference engine.", choices=BACKENDS)
    revision: str | None = setting(None, "Teacher revision (Hub ids).")
    dtype: str = setting("auto", "Teacher weights' dtype in the engine.")
    student_tokenizer: str | None = setting(
        None, "The student's tokenizer (name/folder/id): must map text to the same ids as the "
              "teacher's; renders the student-side prompt.")
    # dataset and its fields
    dataset_split: str = setting("train", "Dataset split (Hub datasets).", flag="--split")
    dataset_revision: str | None = setting(None, "Dataset revision (Hub datasets).")
    dataset_tag: str | None = setting(None, "Prefix of example ids; default: the file stem or Hub name.")
    instruction_field: str = setting("instruction", "Column holding the instruction.")
    input_field: str | None = setting("input", "Column holding the optional input; empty: none.")
    output_field: str | None = setting("output", "Reference-answer column (checked to exist, recorded, "
                                                 "not used); empty: none.")
    skip_bad_lines: bool = setting(False, "Skip rows of a local .json/.jsonl file that are not JSON "
                                          "objects (a cut-off or malformed line) and count them in the "
                                          "manifest; without it they stop the run.")
    # row selection
    offset: int = setting(0, "First dataset row to use.")
    limit: int | None = setting(None, "Rows to use from --offset (unset or 0: all).")
    num_workers: int = setting(1, "Workers filling this cache together (disjoint shards).")
    worker_index: int = setting(0, "This worker's index in 0..W-1.")
    # prompts
    teacher_template: str = setting("enhanced", "Prompt template the teacher answers under.")
    student_template: str = setting("plain", "Prompt template of the student-side prompt ids.")
    templates_file: str | None = setting(None, "Extra prompt templates (JSON), added to "
                                               "inference/prompts.json.")
    # sampling and cache
    k: int = setting(20, "Top-k entries cached per generated token.")
    temperature: float = setting(0.0, "Sampling temperature; 0 = greedy.")
    top_p: float = setting(1.0, "Nucleus sampling mass.")
    seed: int = setting(0, "Sampling seed.")
    n: int = setting(1, "Samples per prompt.")
    responses_from: str | None = setting(
        None, "Score mode: a dataset column of answers, or a responses folder of `akd rollout`; the "
              "teacher scores those answers (top-k at every position) instead of generating.")
    max_new_tokens: int = setting(512, "Longest answer, in tokens (longer ones are marked cut).")
    max_model_len: int = setting(4096, "Engine context length: prompt + answer.")
    tensor_parallel_size: int = setting(1, "GPUs per vLLM engine.")
    overwrite: bool = setting(False, "Replace a cache made with other settings.")
    rows_per_shard: int = setting(128, "Examples per Parquet shard.")
    encoding: str | None = setting(None, "Cache encoding spec (cache_schema); default: its default.")
    chunk_size: int = setting(64, "Prompts per generate call: the resume granularity.")
    hf_batch_size: int = setting(8, "Batch size of the HF backend.")
    progress: bool = setting(True, "Progress bars.")

    def __post_init__(self) -> None:
        # the command line says "none" with an empty column name and "all" with limit 0
        self.input_field = self.input_field or None
        self.output_field = self.output_field or None
        self.limit = self.limit or None
        self.out_dir = str(self.out_dir)
        self.templates_file = None if self.templates_file is None else str(self.templates_file)

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
