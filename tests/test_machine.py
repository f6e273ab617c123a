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
