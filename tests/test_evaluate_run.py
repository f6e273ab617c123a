"""evaluate_model end to end on the tiny random model: the files, statuses and reuse rules.
(The tiny model's code fails; pass rates are not the point here.)"""
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from stages.evaluate import EvalConfig, EvaluationError, Limits, evaluate_model  # noqa: E402
from stages.evaluate.sandbox import STATUSES  # noqa: E402
from stages.evaluate.score import SKIPPED  # noqa: E402

FILES = ("generation.json", "generations.jsonl", "results.jsonl", "summary.json")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_outputs(out, summary, benchmark, n_tasks):
    bench = out / benchmark
    assert all((bench / f).exists() for f in FILES)
    generations, results = _lines(bench / "generations.jsonl"), _lines(bench / "results.jsonl")
    assert [g["task_id"] for g in generations] == [r["task_id"] for r in results]
    assert len(results) == n_tasks
    for gen, res in zip(generations, results):
        assert res["n"] == len(res["statuses"]) == 1
        assert set(res["statuses"]) <= set(STATUSES) | {SKIPPED}
        if gen["skipped"] is None:
            assert len(gen["samples"]) == 1 and gen["prompt_tokens"] > 0
            assert gen["samples"][0]["finish_reason"] in ("stop", "length")
            assert len(res["solutions"]) == 1
    assert summary["benchmarks"][benchmark]["n_tasks"] == n_tasks
    assert 0.0 <= summary["benchmarks"][benchmark]["pass@1"] <= 1.0
    assert json.loads((out / "summary.json").read_text()) == summary
    return generations, results


def test_hf_backend_end_to_end_then_reuse(tiny_teacher, data_dir, tmp_path):
    out = tmp_path / "eval"
    kwargs = dict(model=str(tiny_teacher), out_dir=out, benchmarks=("humaneval", "mbpp"),
                  backend="hf", limit=3, max_new_tokens=16, max_model_len=1024,
                  data_dir=data_dir, role="distilled", trust_model_code=True)
    meta = {"loss": "akd", "cache": "c1", "run": "tiny-akd"}
    summary = evaluate_model(EvalConfig(**kwargs), meta=meta)
    assert summary["role"] == "distilled" and summary["meta"]["loss"] == "akd"
    assert summary["sandbox"]["isolation"] in ("namespaces", "rlimits")
    gens, _ = _check_outputs(out, summary, "humaneval", 3)
    _check_outputs(out, summary, "mbpp", 3)
    assert gens[0]["prompt"]["messages"][0]["content"].startswith(
        "Complete the following Python function:\n```python\nfrom typing import List")

    # A rerun with the answers present generates nothing: an unusable backend is never touched.
    stamp = (out / "humaneval" / "generations.jsonl").stat().st_mtime_ns
    again = evaluate_model(EvalConfig(**{**kwargs, "backend": "no-such-backend"}), meta=meta)
    assert (out / "humaneval" / "generations.jsonl").stat().st_mtime_ns == stamp
    assert again["benchmarks"]["humaneval"] | {"execution_s": 0} == \
        summary["benchmarks"]["humaneval"] | {"execution_s": 0}

    # One benchmark at a time still leaves one summary that holds every benchmark scored.
    one = evaluate_model(EvalConfig(**{**kwargs, "benchmarks": ("humaneval",),
                                       "backend": "no-such-backend"}), meta=meta)
    assert set(one["benchmarks"]) == {"humaneval", "mbpp"}
    assert one["benchmarks"]["mbpp"] == again["benchmarks"]["mbpp"]

    with pytest.raises(EvaluationError, match="max_new_tokens"):
        evaluate_model(EvalConfig(**{**kwargs, "max_new_tokens": 32}), meta=meta)


def test_generation_shows_progress(tiny_teacher, data_dir, tmp_path, capsys):
    evaluate_model(EvalConfig(model=str(tiny_teacher), out_dir=tmp_path / "eval",
                              benchmarks=("humaneval",), backend="hf", limit=2, max_new_tokens=8,
                              max_model_len=1024, data_dir=data_dir, trust_model_code=True),
                   progress=True)
    err = capsys.readouterr().err
    assert "humaneval answers" in err and "2/2" in err and "tok/s" in err


def test_over_long_prompts_are_skipped_and_score_as_failures(tiny_teacher, data_dir, tmp_path):
    summary = evaluate_model(EvalConfig(
        model=str(tiny_teacher), out_dir=tmp_path / "eval", benchmarks=("mbpp",), mode="completion",
        backend="hf", limit=2, max_new_tokens=16, max_model_len=64, data_dir=data_dir,
        trust_model_code=True))
    mbpp = summary["benchmarks"]["mbpp"]
    assert mbpp["skipped"] == 2 and mbpp["pass@1"] == 0.0
    assert mbpp["status_counts"] == {SKIPPED: 2}


def test_bad_options_are_refused_before_any_work(tmp_path):
    with pytest.raises(EvaluationError, match="benchmark"):
        EvalConfig(model="m", out_dir=tmp_path, benchmarks=("apps",))
    with pytest.raises(EvaluationError, match="role"):
        EvalConfig(model="m", out_dir=tmp_path, role="baseline")
    with pytest.raises(EvaluationError, match="role"):
        evaluate_model(EvalConfig(model="m", out_dir=tmp_path), role="baseline")
    with pytest.raises(EvaluationError, match="temperature"):
        EvalConfig(model="m", out_dir=tmp_path, n_samples=5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_vllm_backend_end_to_end_with_samples(tiny_teacher, data_dir, tmp_path):
    out = tmp_path / "eval"
    summary = evaluate_model(EvalConfig(
        model=str(tiny_teacher), out_dir=out, benchmarks=("humaneval",), backend="vllm", limit=3,
        max_new_tokens=16, max_model_len=1024, n_samples=2, temperature=0.8, data_dir=data_dir,
        mode="completion", trust_model_code=True))
    results = _lines(out / "humaneval" / "results.jsonl")
    assert [r["n"] for r in results] == [2, 2, 2]
    assert set(summary["benchmarks"]["humaneval"]["pass@k"]) == {"pass@1"}
    generations = _lines(out / "humaneval" / "generations.jsonl")
    assert all(len(g["samples"]) == 2 for g in generations)
    assert generations[0]["prompt"]["text"].startswith("from typing import List")


def test_eval_command_passes_the_sandbox_options(tiny_teacher, tmp_path, monkeypatch):
    """`akd eval --memory-mb N --trust-model-code` reaches the sandbox; by default neither."""
    import stages.evaluate
    from click.testing import CliRunner

    from pipeline.cli import main

    seen = []

    def fake_evaluate(config, **kwargs):
        seen.append(config)
        return {"benchmarks": {"humaneval": {"pass@1": 0.0, "n_tasks": 0}}}

    monkeypatch.setattr(stages.evaluate, "evaluate_model", fake_evaluate)
    base = ["eval", "--model", str(tiny_teacher), "--out", str(tmp_path),
            "--benchmark", "humaneval"]
    for extra in ([], ["--memory-mb", "6000", "--trust-model-code"]):
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == 0, result.output
    assert (seen[0].limits, seen[0].trust_model_code) == (Limits(), False)
    assert (seen[1].limits, seen[1].trust_model_code) == (Limits(memory_mb=6000), True)
