"""`akd speed`: a model's decode throughput at a fixed answer length.

An evaluation's generated tokens/s depends on how long the model's answers are: a batch whose
answers end early runs emptier at the end, so a model that stops sooner looks slower. Here
every prompt gets exactly `new_tokens` new tokens (greedy, eos and stops ignored), on the
first N HumanEval prompts rendered as `akd eval` renders instruct prompts, so models compare
on the same work with the same engine settings. One short untimed generate warms the engine
up; one timed generate of all prompts is the figure. Written to OUT/speed.json.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write_json
from common.machine import machine_facts
from common.settings import setting
from inference import BACKENDS, SamplingSpec, compute_dtype
from stages.evaluate.datasets import load_tasks
from stages.evaluate.errors import EvaluationError
from stages.evaluate.generate import prompt_ids
from stages.evaluate.model_size import parameter_count
from stages.evaluate.prompts import build_prompt

SPEED_FILE = "speed.json"
SPEED_KIND = "akd-speed"
WARMUP_TOKENS = 8
PROMPT_SET = "humaneval"


@dataclass
class SpeedConfig:
    model: str = setting(help="Registry name or local HF folder (a distill run's final/ too).")
    out_dir: str | None = setting(None, "Default: speed/<model folder name>.", flag="--out")
    prompts: int = setting(64, "The first N HumanEval prompts (instruct, as `akd eval` asks them).")
    new_tokens: int = setting(256, "New tokens per prompt, exactly (greedy; eos and stops ignored).")
    backend: str = setting("vllm", "Inference engine.", choices=BACKENDS)
    max_model_len: int = setting(4096, "Engine context length: prompt + answer.")
    dtype: str = setting("auto", "Weights' dtype in the engine.")
    data_dir: str | None = setting(None, "Where HumanEval lives (default: the data akd ships).")

    def __post_init__(self) -> None:
        for name in ("prompts", "new_tokens"):
            if getattr(self, name) < 1:
                raise EvaluationError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.backend not in BACKENDS:
            raise EvaluationError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")


def measure_speed(config: SpeedConfig, *, engine=None) -> dict:
    """Time one fixed-length generate of config.prompts prompts; write and return speed.json.
    `engine` (an inference.Engine) is used instead of loading one; it is not closed here."""
    if config.out_dir is None:
        raise EvaluationError("speed: no output folder given (--out)")
    if not Path(config.model).is_dir():
        raise EvaluationError(f"model folder {config.model} does not exist (a registry name or a local "
                              "HF folder is needed)")
    tasks = load_tasks(PROMPT_SET, data_dir=Path(config.data_dir) if config.data_dir else None,
                       limit=config.prompts)
    if len(tasks) < config.prompts:
        raise EvaluationError(f"--prompts {config.prompts}: HumanEval has only {len(tasks)} tasks")
    owned = None
    if engine is None:
        from inference import load_engine

        engine = owned = load_engine(config.model, backend=config.backend,
                                     max_model_len=config.max_model_len, dtype=config.dtype)
    try:
        ids = [prompt_ids(engine, build_prompt(task, "instruct")) for task in tasks]
        spec = SamplingSpec(max_new_tokens=config.new_tokens, ignore_eos=True)
        engine.generate(ids[:1], SamplingSpec(max_new_tokens=min(WARMUP_TOKENS, config.new_tokens),
                                              ignore_eos=True))
        start = time.perf_counter()
        outputs = engine.generate(ids, spec)
        seconds = time.perf_counter() - start
    finally:
        if owned is not None:
            owned.close()
    generated = sum(len(g.token_ids) for samples in outputs for g in samples)
    expected = config.prompts * config.new_tokens
    if generated != expected:
        raise EvaluationError(f"speed: the engine generated {generated} tokens, not {config.prompts} prompts "
                              f"x {config.new_tokens} = {expected}; the figure would not be fixed-length")
    record = {
        "kind": SPEED_KIND, "version": 1, "model": config.model,
        "parameters": parameter_count(config.model),
        "prompt_set": f"{PROMPT_SET} instruct, first {config.prompts}",
        "prompts": config.prompts, "prompt_tokens": sum(len(p) for p in ids),
        "new_tokens": config.new_tokens, "generated_tokens": generated,
        "seconds": round(seconds, 3), "tokens_per_s": round(generated / seconds, 2),
        "sampling": {"temperature": 0.0, "ignore_eos": True, "warmup_tokens": min(WARMUP_TOKENS, config.new_tokens)},
        "backend": config.backend,
        "engine": {"backend": config.backend, "dtype": compute_dtype(config.backend, config.dtype),
                   "max_model_len": config.max_model_len,
                   "one_generate_call": True, "cpu_threads": _threads(),
                   "env": {k: v for k, v in sorted(os.environ.items())
                           if k.startswith("VLLM_CPU_") or k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")}},
        "software": _software(),
        "machine": machine_facts(),  # tokens/s compare only between records of one machine
    }
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SPEED_FILE, record)
    return record


def read_speed(folder: Path) -> dict | None:
    """speed.json in `folder`, or None where the measurement has not been made."""
    path = Path(folder) / SPEED_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _software() -> dict:
    from common.machine import software_versions

    return software_versions()
