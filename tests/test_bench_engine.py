"""The engine benchmark's arithmetic (benchmarks/bench_engine.py): a call's share of the peak is
only as true as the FLOPs it counts, which must be the model's own matrices; and sample_churn's counts."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_engine import call_flops, engine_dtype, shape_of  # noqa: E402


def _qwen(tmp_path, **overrides):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=96, **overrides)
    model = Qwen2ForCausalLM(config)
    config.save_pretrained(tmp_path)
    return model, shape_of(tmp_path)


def test_the_peak_is_measured_in_the_dtype_the_engine_computes(tmp_path):
    """`auto` (a CPU that computes bf16) is the model's own dtype; float16 runs as bfloat16 on a CPU."""
    for saved, expected in (("bfloat16", "bfloat16"), ("float16", "bfloat16"), ("float32", "float32")):
        (tmp_path / "config.json").write_text(json.dumps({"dtype": saved}))
        assert engine_dtype(tmp_path, "auto") == expected
    assert engine_dtype(tmp_path, "float32") == "float32"  # an emulating CPU's resolved dtype stands


def test_the_layers_count_two_flops_per_weight_per_processed_token(tmp_path):
    model, shape = _qwen(tmp_path)
    weights = sum(p.numel() for name, p in model.model.layers.named_parameters() if name.endswith("proj.weight"))
    prompt, new = 10, 4
    flops = call_flops(shape, [prompt], new)
    head = new * 2 * shape["hidden"] * shape["vocab"]
    positions = prompt + new - 1
    attention = shape["layers"] * 4 * shape["heads"] * shape["head_dim"] * positions * (positions + 1) / 2
    assert flops == positions * 2 * weights + head + attention


def test_prompts_add_up_and_longer_contexts_cost_more_attention(tmp_path):
    _, shape = _qwen(tmp_path)
    one, other = call_flops(shape, [10], 4), call_flops(shape, [30], 4)
    assert call_flops(shape, [10, 30], 4) == one + other
    per_token = (other - one) / 20
    assert per_token > call_flops(shape, [11], 4) - one  # attention grows with the context


def test_shape_reads_an_explicit_head_dim(tmp_path):
    _qwen(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "head_dim": 32}))
    assert shape_of(tmp_path)["head_dim"] == 32


def test_sample_churn_counts_identical_answers_and_flips_each_way():
    from sample_churn import churn

    def rows(*answers):
        return {(f"T/{i}", 0): {"solution": text, "passed": passed} for i, (text, passed) in enumerate(answers)}

    a = rows(("x", True), ("y", True), ("z", False), ("w", False))
    b = rows(("x", True), ("y2", False), ("z2", True), ("w", False))
    found = churn(a, {**b, ("T/9", 0): {"solution": "only in b", "passed": True}})
    assert found["samples"] == 4 and found["identical_solutions"] == 2  # the unshared row is left out
    assert (found["pass_a"], found["pass_b"], found["only_a_passes"], found["only_b_passes"]) == (2, 2, 1, 1)
    assert found["mcnemar_p"] == 1.0


def test_sample_churn_compares_per_task_rates_over_each_tasks_samples():
    from sample_churn import churn

    a = {("T/0", 0): {"solution": "p", "passed": True}, ("T/0", 1): {"solution": "q", "passed": True},
         ("T/1", 0): {"solution": "r", "passed": False}, ("T/1", 1): {"solution": "s", "passed": True}}
    b = {**a, ("T/0", 1): {"solution": "q2", "passed": False}}
    rates = churn(a, b)["per_task_rates"]
    assert rates["n_tasks"] == 2 and rates["pass_rate_a"] == 0.75 and rates["pass_rate_b"] == 0.5
    assert rates["diff"] == 0.25
