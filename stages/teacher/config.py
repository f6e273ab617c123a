"""Every option of stage one in one dataclass, checked before any work starts.

The settings stage one shares with `akd rollout` (engine, dataset rows, sampling, output
shards) are nested groups declared once in settings.py; their options are flat on the
command line (common/settings.py). Build one from flat option names with `from_options`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.settings import build_config, setting, unknown_options

from .settings import (DatasetSettings, EngineSettings, SamplingSettings, ShardSettings,
                       TeacherConfigError, need, need_positive)

__all__ = ["TeacherCacheConfig", "TeacherConfigError", "from_flat_options"]


def from_flat_options(cls, options: dict):
    """`cls` from flat option values keyed by field name (as the command line names them,
    nested groups included); an unknown name is refused rather than silently dropped."""
    unknown = unknown_options(cls, options)
    if unknown:
        raise TeacherConfigError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    return build_config(cls, options)


@dataclass
class TeacherCacheConfig:
    """Stage one's settings; `akd teacher-cache` takes its options from these fields."""

    model: str = setting(help="Teacher: registry name (built on first use), local HF folder or Hub id.",
                         flag="--teacher")
    data: DatasetSettings
    out_dir: str = setting(help="The cache directory.", flag="--out")
    engine: EngineSettings = field(default_factory=EngineSettings)
    student_tokenizer: str | None = setting(
        None, "The student's tokenizer (name/folder/id): must map text to the same ids as the "
              "teacher's; renders the student-side prompt.")
    # dataset fields only stage one reads
    output_field: str | None = setting("output", "Reference-answer column (checked to exist, recorded, "
                                                 "not used); empty: none.")
    skip_bad_lines: bool = setting(False, "Skip rows of a local .json/.jsonl file that are not JSON "
                                          "objects (a cut-off or malformed line) and count them in the "
                                          "manifest; without it they stop the run.")
    # row selection among workers
    num_workers: int = setting(1, "Workers filling this cache together (disjoint shards).")
    worker_index: int = setting(0, "This worker's index in 0..W-1.")
    # prompts
    teacher_template: str = setting("enhanced", "Prompt template the teacher answers under.")
    student_template: str = setting("plain", "Prompt template of the student-side prompt ids.")
    templates_file: str | None = setting(None, "Extra prompt templates (JSON), added to "
                                               "inference/prompts.json.")
    # sampling and cache
    k: int = setting(20, "Top-k entries cached per generated token.")
    sampling: SamplingSettings = field(default_factory=SamplingSettings)  # greedy, one answer
    responses_from: str | None = setting(
        None, "Score mode: a dataset column of answers, or a responses folder of `akd rollout`; the "
              "teacher scores those answers (top-k at every position) instead of generating.")
    output: ShardSettings = field(default_factory=ShardSettings)
    encoding: str | None = setting(None, "compact-v1 with other parameters, e.g. compact-v1:fine=0.0002 for a finer "
                                         "log-prob grid (cache_schema/compact_encoding.py); default: its default.")

    def __post_init__(self) -> None:
        self.output_field = self.output_field or None  # an empty column name: none
        self.out_dir = str(self.out_dir)
        self.templates_file = None if self.templates_file is None else str(self.templates_file)

    @classmethod
    def from_options(cls, options: dict) -> "TeacherCacheConfig":
        return from_flat_options(cls, options)

    def validate(self) -> None:
        self.engine.validate()
        need(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        self.sampling.validate()
        need(not self.responses_from or self.sampling.n == 1, "n", "score mode (--responses-from) "
             "scores the given responses, one per example id; leave n at 1")
        self.sampling.check_fits(self.engine)
        self.data.validate()
        need_positive(self, "num_workers")
        need(0 <= self.worker_index < self.num_workers, "worker_index",
             f"{self.worker_index} is outside 0..{self.num_workers - 1}")
        self.output.validate()
