"""The step profile's arithmetic (benchmarks/bench_step_profile.py): the FLOPs a step is measured
against must be the model's own matrices, or every share of the peak it prints is wrong."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_step_profile import QWEN_05B, categorize, matmul_peak, step_flops  # noqa: E402


def test_the_body_flops_are_six_per_token_per_weight_of_the_real_layers():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    small = {**QWEN_05B, "vocab_size": 64}  # the vocabulary does not enter the body
    model = Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=2, **small))
    weights = sum(p.numel() for name, p in model.model.layers.named_parameters()
                  if name.endswith("proj.weight"))
    flops = step_flops(2, tokens=100, response=40)
    assert flops["body"] == 6 * 100 * weights
    assert flops["lm_head"] == 6 * 40 * QWEN_05B["hidden_size"] * QWEN_05B["vocab_size"]
    assert flops["total"] == flops["body"] + flops["lm_head"] + flops["attention"]


def test_profiled_ops_fall_into_their_categories_and_shares_sum_to_one():
    class Event:
        def __init__(self, key, us):
            self.key, self.self_cpu_time_total = key, us

    found = categorize([Event("aten::mm", 6e6), Event("aten::_fused_adamw_", 1e6), Event("aten::copy_", 1e6),
                        Event("aten::exp", 2e6)])
    assert found["matmul"]["s"] == 6.0 and found["optimizer"]["s"] == 1.0
    assert found["casts_copies"]["s"] == 1.0 and found["other"]["s"] == 2.0
    assert sum(c["share"] for c in found.values()) == pytest.approx(1.0)


def test_the_peak_is_each_shapes_best_run_and_the_mix_weights_shapes_by_their_flops():
    flops = step_flops(24, tokens=512, response=242)
    slow = {"q_o": 100.0, "k_v": 100.0, "mlp_up": 100.0, "mlp_down": 100.0, "lm_head_chunk": 100.0}
    fast = {**slow, "mlp_up": 400.0}
    peak = matmul_peak([slow, fast], flops)
    assert peak["gflops_by_shape"]["mlp_up"] == 400.0 and peak["peak_gflops"] == 400.0
    assert 100.0 < peak["step_mix_gflops"] < 400.0
    assert peak["step_mix_gflops_by_run"][0] == 100.0 and peak["step_mix_gflops_by_run"][1] == peak["step_mix_gflops"]
    assert matmul_peak([slow], flops)["step_mix_gflops"] == 100.0
