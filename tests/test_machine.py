"""Which machine ran a step: CPU model, cores and the ISA flags that decide bf16 speed."""
from common.machine import bf16_is_native, describe, machine_facts

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme avx2 fma
"""
XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_the_flags_that_decide_bf16_speed_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "epyc").write_text(EPYC)
    (tmp_path / "xeon").write_text(XEON)
    epyc, xeon = machine_facts(tmp_path / "epyc"), machine_facts(tmp_path / "xeon")
    assert epyc["cpu"] == "AMD EPYC" and epyc["isa"] == ["avx2"] and not bf16_is_native(epyc)
    assert xeon["isa"] == ["avx2", "avx512f", "avx512_bf16", "amx_bf16"] and bf16_is_native(xeon)
    assert describe(epyc).startswith("AMD EPYC (") and describe(epyc).endswith("cores; avx2)")
    assert epyc["cores"] >= 1


def test_a_machine_without_cpuinfo_still_has_a_record(tmp_path):
    facts = machine_facts(tmp_path / "missing")
    assert facts["cpu"] and facts["isa"] == [] and "no AVX2" in describe(facts)


def test_auto_dtype_is_float32_only_where_bf16_is_emulated(tmp_path):
    from common.machine import cpu_dtype

    (tmp_path / "epyc").write_text(EPYC)
    (tmp_path / "xeon").write_text(XEON)
    epyc, xeon = machine_facts(tmp_path / "epyc"), machine_facts(tmp_path / "xeon")
    assert cpu_dtype("auto", epyc) == "float32"
    assert cpu_dtype("auto", xeon) == "auto"  # the model's own dtype (bf16 for Qwen2.5-Coder)
    assert cpu_dtype("bfloat16", epyc) == "bfloat16" and cpu_dtype("float16", xeon) == "float16"


def test_engines_ask_for_the_resolved_dtype_on_a_cpu_and_the_requested_one_on_a_gpu(monkeypatch, tmp_path):
    import common.machine
    from inference import engines

    (tmp_path / "epyc").write_text(EPYC)
    avx2_only = machine_facts(tmp_path / "epyc")
    monkeypatch.setattr(common.machine, "machine_facts", lambda: avx2_only)
    monkeypatch.setattr(engines, "_vllm_runs_on_cpu", lambda: True)
    assert engines.compute_dtype("vllm", "auto") == engines.compute_dtype("hf", "auto") == "float32"
    assert engines.compute_dtype("hf", "bfloat16") == "bfloat16"
    monkeypatch.setattr(engines, "_vllm_runs_on_cpu", lambda: False)
    assert engines.compute_dtype("vllm", "auto") == "auto"
