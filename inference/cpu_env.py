"""Environment defaults that make vLLM usable on a CPU-only machine.

vLLM-CPU reads these in the worker processes it spawns, so setting them in os.environ
before the engine is built is enough (no re-exec): the workers, which do the compute,
start with them. A value the user already set is left alone.
"""
from __future__ import annotations

import os

from .allocator import allocator_env, find_tcmalloc

CPU_DEFAULTS = {
    # vLLM keeps one of the cores for itself otherwise: half the speed on a 2-core machine.
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    # KV cache in GiB; vLLM's default takes a share of the whole NUMA node. A decode step keeps a
    # CPU busier the more sequences it holds (on 2 AVX2 cores the 1.5B teacher ran at 74% of the
    # matmul peak with 16 prompts in flight, 88% with 64; benchmarks/bench_engine.py): 4 GiB
    # holds ~120 of the teacher's 600-token sequences in float32 (57 KB a token), 2 GiB half.
    "VLLM_CPU_KVCACHE_SPACE": "4",
    # vLLM gives one engine step 300 s and an engine's start 600 s, then kills the engine. On a
    # 2-core AVX2-only CPU the 1.5B teacher's start (a profiling forward of a full batch of
    # tokens) took 538 s and a step prefilling 64 prompts passed 300 s: the engine died 64
    # examples into a cache. A slow step is not a hung one here.
    "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "7200",
    "VLLM_ENGINE_READY_TIMEOUT_S": "7200",
}


def is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def apply_cpu_defaults(environ=os.environ, tcmalloc=find_tcmalloc) -> dict[str, str]:
    """Set the CPU defaults and, for the workers, the allocator (inference/allocator.py):
    tcmalloc (Debian libtcmalloc-minimal4) if present, else glibc's raised thresholds.

    Returns what was changed, for the log. tcmalloc roughly doubles vLLM-CPU's speed
    together with the reserved-CPU setting (docs/design.md, section 9).
    """
    changed = {}
    for key, value in CPU_DEFAULTS.items():
        if key not in environ:
            environ[key] = changed[key] = value
    for key, value in allocator_env(environ, tcmalloc()).items():
        environ[key] = changed[key] = value
    return changed
