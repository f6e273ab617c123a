"""What a run did, as a dict for the caller and a table for the terminal."""
from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from inference.answer_text import python_block


def python_block_parses(text: str) -> bool:
    """Whether the code block the evaluator would run (inference/answer_text.py: the first
    Python-tagged block, else the first block) is valid Python; no block: False."""
    code = python_block(text)
    if code is None:
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


@dataclass
class RunStats:
    examples: int = 0
    tokens: int = 0
    topk_mass_sum: float = 0.0
    python_ok: int = 0
    finish: Counter = field(default_factory=Counter)

    def add(self, text: str, topk_logprobs: np.ndarray, finish_reason: str) -> None:
        self.examples += 1
        self.tokens += int(topk_logprobs.shape[0])
        self.topk_mass_sum += float(np.exp(topk_logprobs.astype(np.float64)).sum())
        self.python_ok += python_block_parses(text)
        self.finish[finish_reason] += 1

    def for_manifest(self) -> dict:
        """Additive counts (finalize sums them over workers); means are derived from them."""
        return {"run_examples": self.examples, "run_response_tokens": self.tokens,
                "run_topk_mass_sum": self.topk_mass_sum, "run_python_parse_ok": self.python_ok,
                **{f"run_finish_{k}": v for k, v in self.finish.items()}}


def make_summary(stats: RunStats, manifest, *, already_cached: int, rows_selected: int,
                 skipped: Counter, wall_s: float, generate_s: float, cache_dir: str) -> dict:
    """`manifest` is the whole cache's, or this worker's part when several workers fill it."""
    return {
        "cache_dir": cache_dir,
        "rows_selected": rows_selected,
        "examples_written": stats.examples,
        "examples_already_cached": already_cached,
        "examples_in_cache": manifest.rows,
        "response_tokens_written": stats.tokens,
        "skipped": dict(sorted(skipped.items())),
        "finish_reasons": dict(sorted(stats.finish.items())),
        "mean_topk_mass": stats.topk_mass_sum / stats.tokens if stats.tokens else None,
        "python_parse_share": stats.python_ok / stats.examples if stats.examples else None,
        "bytes_per_token": manifest.bytes / manifest.response_tokens if manifest.response_tokens else None,
        "cache_bytes": manifest.bytes,
        "wall_time_s": round(wall_s, 2),
        "generate_time_s": round(generate_s, 2),
        "tokens_per_s": stats.tokens / generate_s if generate_s > 0 else None,
    }


def format_summary(summary: dict) -> str:
    def fmt(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        return "-" if value is None else str(value)

    width = max(len(k) for k in summary)
    lines = ["teacher cache summary"] + [f"  {k.ljust(width)}  {fmt(v)}" for k, v in summary.items()]
    return "\n".join(lines)
