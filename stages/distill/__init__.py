"""Stage two: train a student on the teacher's top-k cache (see docs/design.md)."""

# ---- data pipeline and trainer ----
from .config import DistillConfig
from .errors import (
    DistillConfigError,
    DistillError,
    NonFiniteLossError,
    TokenizerMismatchError,
)
from .trainer import train
