"""Every setting of one evaluation (`akd eval`), declared once; the CLI derives from it."""
from __future__ import annotations

from dataclasses import dataclass, field

from common.settings import setting
from inference import BACKENDS
from stages.evaluate.datasets import BENCHMARKS, MBPP_SPLITS
from stages.evaluate.errors import EvaluationError
from stages.evaluate.prompts import MODES
from stages.evaluate.sandbox import Limits

ROLES = ("teacher", "student", "distilled")


@dataclass
class EvalConfig:
    model: str = setting(help="Registry name, HF folder (a distill run's final/ too) or Hub id.")
    out_dir: str | None = setting(None, "Default: evals/<model folder name>.", flag="--out")
    role: str | None = setting(None, "Default: distilled for a distill run's folder, else student.",
                               choices=ROLES)
    benchmarks: tuple[str, ...] = setting(("humaneval", "mbpp"), "Benchmarks to score (repeat).",
                                          flag="--benchmark")
    mode: str = setting("instruct", "Chat prompt (instruct) or plain continuation (completion).",
                        choices=MODES)
    backend: str = setting("vllm", "Inference engine.", choices=BACKENDS)
    limit: int | None = setting(None, "Only the first N tasks (unset or 0: all).")
    n_samples: int = setting(1, "Samples per task (pass@k).")
    temperature: float = setting(0.0, "Sampling temperature; 0 = greedy.")
    max_new_tokens: int = setting(512, "Longest answer, in tokens.")
    seed: int = setting(0, "Sampling seed.")
    max_model_len: int = setting(4096, "Engine context length: prompt + answer.")
    dtype: str = setting("auto", "Weights' dtype in the engine.")
    data_dir: str | None = setting(None, "Where HumanEval/MBPP live (default: the data akd ships, "
                                         "akd_data).")
    split: str = setting("test", "MBPP split: test (11-510), validation (511-600), prompt (1-10), "
                                 "train (601-974), selection (1-10 + 511-600).",
                         choices=tuple(MBPP_SPLITS))
    template: str | None = setting(None, "Ask through this prompt template (inference/prompts.json); "
                                         "default: the benchmark's words as the only user turn.")
    templates_file: str | None = setting(None, "Extra templates, as for teacher-cache.")
    trust_model_code: bool = setting(False, "Run the answers even where the namespace jail is "
                                            "unavailable (not root): with resource limits only, a "
                                            "program could harm this user's files.")
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.limit = self.limit or None
        self.benchmarks = tuple(self.benchmarks)
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown or not self.benchmarks:
            raise EvaluationError(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        if self.mode not in MODES:
            raise EvaluationError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.role is not None and self.role not in ROLES:
            raise EvaluationError(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}")
        if self.n_samples < 1:
            raise EvaluationError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.n_samples > 1 and self.temperature == 0:
            raise EvaluationError("n_samples > 1 needs temperature > 0 (greedy samples are identical)")
