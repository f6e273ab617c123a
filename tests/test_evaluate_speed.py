"""What an evaluation records for a size/speed table: parameters (from the safetensors
headers), generated tokens, generation seconds and tokens/s, per benchmark and in total."""
import json
import os

import pytest

from common.machine import cpu_dtype
import torch
from safetensors.torch import save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from stages.evaluate import EvalConfig, EvaluationError, evaluate_model  # noqa: E402
from stages.evaluate.model_size import parameter_count  # noqa: E402


def _tokens_in(path):
    return sum(s["tokens"] for line in path.read_text().splitlines()
               for s in json.loads(line)["samples"])


def test_summary_records_parameters_tokens_and_speed(tiny_teacher, data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "eval"
    kwargs = dict(model=str(tiny_teacher), out_dir=out, benchmarks=("humaneval", "mbpp"),
                  backend="hf", limit=2, max_new_tokens=12, max_model_len=1024,
                  data_dir=data_dir, trust_model_code=True)
    summary = evaluate_model(EvalConfig(**kwargs))
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    for name in ("humaneval", "mbpp"):
        figures = summary["benchmarks"][name]["generation"]
        tokens = _tokens_in(out / name / "generations.jsonl")
        assert figures["generated_tokens"] == tokens > 0
        assert figures["generation_s"] > 0
        assert figures["tokens_per_s"] == pytest.approx(tokens / figures["generation_s"], rel=0.05)
        assert (figures["backend"], figures["dtype"], figures["max_model_len"]) == ("hf", cpu_dtype("auto"), 1024)
        saved = json.loads((out / name / "generation.json").read_text())
        assert {k: saved[k] for k in figures} == figures
        bench_summary = json.loads((out / name / "summary.json").read_text())
        assert bench_summary["generation"] == figures
    total = summary["generation"]
    per = [summary["benchmarks"][n]["generation"] for n in ("humaneval", "mbpp")]
    assert total["generated_tokens"] == sum(g["generated_tokens"] for g in per)
    assert total["generation_s"] == pytest.approx(sum(g["generation_s"] for g in per))
    assert total["benchmarks_counted"] == 2 and total["backends"] == ["hf"]

    # Reused answers keep the figures of the run that generated them, not the reuse's backend.
    again = evaluate_model(EvalConfig(**{**kwargs, "backend": "no-such-backend"}))
    assert again["benchmarks"]["mbpp"]["generation"] == summary["benchmarks"]["mbpp"]["generation"]
    assert again["generation"] == total

    # A generation.json written before these figures existed: tokens come from the answers.
    settings_file = out / "mbpp" / "generation.json"
    old = json.loads(settings_file.read_text())
    for key in ("generated_tokens", "tokens_per_s", "backend", "dtype", "max_model_len"):
        del old[key]
    settings_file.write_text(json.dumps(old))
    older = evaluate_model(EvalConfig(**{**kwargs, "benchmarks": ("mbpp",)}))
    figures = older["benchmarks"]["mbpp"]["generation"]
    assert figures["generated_tokens"] == _tokens_in(out / "mbpp" / "generations.jsonl")
    assert figures["generation_s"] == old["generation_s"] and figures["backend"] is None


def test_parameter_count_reads_shards_without_loading(tmp_path):
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, tmp_path / "model-1.safetensors")
    save_file({"c": torch.zeros(2, 2, 2)}, tmp_path / "model-2.safetensors")
    save_file({"stray": torch.zeros(100)}, tmp_path / "not-in-index.safetensors")
    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-1.safetensors",
                            "c": "model-2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert parameter_count(tmp_path) == 12 + 5 + 8
    (tmp_path / "model.safetensors.index.json").unlink()
    assert parameter_count(tmp_path) == 12 + 5 + 8 + 100  # no index: every safetensors file
    assert parameter_count(tmp_path / "missing") is None
    assert parameter_count("Qwen/Qwen2.5-Coder-0.5B-Instruct") is None  # a Hub id
    empty = tmp_path / "bin-only"
    empty.mkdir()
    (empty / "pytorch_model.bin").write_bytes(b"")
    assert parameter_count(empty) is None
    (empty / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(EvaluationError, match=r"model.safetensors: cannot read its safetensors header"):
        parameter_count(empty)
