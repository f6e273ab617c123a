"""Pick and build an engine by name."""
from __future__ import annotations

import functools

from common.machine import cpu_dtype

from .spec import Engine, InferenceError

BACKENDS = ("vllm", "hf")


def compute_dtype(backend: str, dtype: str) -> str:
    """The dtype `load_engine` asks the engine for, which a cache or an evaluation records:
    `auto` on a CPU that emulates bf16 becomes float32 (common.machine.cpu_dtype); on a
    GPU, and for an explicit dtype, the request stands. The hf backend runs on the CPU."""
    if backend == "vllm" and not _vllm_runs_on_cpu():
        return dtype
    return cpu_dtype(dtype)


@functools.cache
def _vllm_runs_on_cpu() -> bool:
    try:
        from .cpu_env import is_cpu_platform
        return is_cpu_platform()
    except ImportError:  # no vLLM: load_engine will say so; the CPU answer is the safe one
        return True


def load_engine(model: str, *, backend: str = "vllm", max_model_len: int = 4096,
                tensor_parallel_size: int = 1, dtype: str = "auto", max_logprobs: int = 0,
                seed: int = 0, batch_size: int = 8, revision: str | None = None,
                gpu_memory_utilization: float | None = None,
                enforce_eager: bool | None = None) -> Engine:
    """An Engine for `model` (a local folder or Hub id).

    vLLM: `seed` seeds the engine, `gpu_memory_utilization` defaults to 0.3 on a CPU and
    0.85 on a GPU. HF: `batch_size` prompts per generate call; tensor parallelism is vLLM's.
    `dtype`: as compute_dtype resolves it. `enforce_eager`: default eager on a CPU that computes
    float32, compiled where it computes bf16 and on a GPU (vllm_engine.eager_on_cpu says why).
    """
    dtype = compute_dtype(backend, dtype)
    if backend == "vllm":
        from .vllm_engine import VllmEngine

        return VllmEngine(model, max_model_len=max_model_len,
                          tensor_parallel_size=tensor_parallel_size, dtype=dtype,
                          max_logprobs=max_logprobs, seed=seed, revision=revision,
                          gpu_memory_utilization=gpu_memory_utilization,
                          enforce_eager=enforce_eager)
    if backend == "hf":
        if tensor_parallel_size != 1:
            raise InferenceError("the hf backend runs on one device; use --backend vllm "
                                 f"for tensor_parallel_size={tensor_parallel_size}")
        from .hf_engine import HfEngine

        return HfEngine(model, max_model_len=max_model_len, dtype=dtype,
                        max_logprobs=max_logprobs, batch_size=batch_size, revision=revision)
    raise InferenceError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
