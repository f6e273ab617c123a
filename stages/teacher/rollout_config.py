"""Every option of `akd rollout` in one dataclass, checked before any work starts.

Its engine, dataset, sampling and output settings are stage one's groups (settings.py),
with a rollout's own defaults: n=4 samples at temperature 0.8, larger shards and chunks."""
from __future__ import annotations

from dataclasses import dataclass, field

from common.settings import setting

from .config import from_flat_options
from .settings import DatasetSettings, EngineSettings, SamplingSettings, ShardSettings


@dataclass
class RolloutConfig:
    """`akd rollout`'s settings: a model (usually the student) answers stage one's prompts."""

    model: str = setting(help="The model that answers: registry name, local HF folder or Hub id.")
    data: DatasetSettings
    out: str = setting(help="The responses directory (read by `akd teacher-cache --responses-from`).")
    engine: EngineSettings = field(default_factory=EngineSettings)
    # prompt and sampling
    template: str = setting("plain", "Prompt template the model answers under; score with the same "
                                     "--student-template.")
    templates_file: str | None = setting(None, "Extra prompt templates (JSON).")
    sampling: SamplingSettings = field(
        default_factory=lambda: SamplingSettings(n=4, temperature=0.8))
    output: ShardSettings = field(
        default_factory=lambda: ShardSettings(rows_per_shard=256, chunk_size=128))

    def __post_init__(self) -> None:
        self.out = str(self.out)

    @classmethod
    def from_options(cls, options: dict) -> "RolloutConfig":
        return from_flat_options(cls, options)

    def validate(self) -> None:
        self.engine.validate()
        self.sampling.validate()
        self.sampling.check_fits(self.engine)
        self.data.validate()  # rows are chosen and checked as stage one does
        self.output.validate()
