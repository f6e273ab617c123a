"""Evaluate one model on HumanEval/MBPP: generate (or reuse) answers, run them, save it all.

One folder per model, laid out as eval_folder.py says. A rerun with the same settings reuses
generations.jsonl and only re-executes the code; a call stopped while generating resumes from
the answers it saved as they finished (answer_journal.py).

Each benchmark's summary carries `generation`: generated tokens, the wall seconds of the
engine's batched generate call and their ratio (tokens/s), with the engine (backend, dtype,
max_model_len) that produced them; a reused generation keeps the figures measured when it was
made. summary.json adds their totals over its benchmarks and the model's parameter count
(from its safetensors headers), so a size/speed table needs no model loaded.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write, names_full_disk
from inference import compute_dtype
from stages.evaluate.config import ROLES, EvalConfig
from stages.evaluate.datasets import load_tasks, mbpp_shots
from stages.evaluate.errors import EvaluationError
from stages.evaluate.eval_folder import (
    BENCHMARK_SUMMARY_KIND,
    GENERATION_FILE,
    GENERATIONS_FILE,
    RESULTS_FILE,
    SUMMARY_FILE,
    SUMMARY_KIND,
)
from stages.evaluate.answer_journal import PARTIAL_FILE, AnswerJournal
from stages.evaluate.generate import GenerationSettings, generate_answers
from stages.evaluate.model_size import parameter_count
from stages.evaluate.prompts import build_prompt
from stages.evaluate.sandbox import Sandbox
from stages.evaluate.score import score_answers, summarize

log = logging.getLogger(__name__)
# Settings that change the answers: a saved generation is reused only if all of them match.
_GENERATION_KEYS = ("model", "mode", "split", "task_ids", "max_new_tokens", "temperature",
                    "n_samples", "seed", "template")


def evaluate_model(config: EvalConfig, *, role: str = "student", meta: dict | None = None,
                   engine=None, template=None, progress: bool = False) -> dict:
    """Scores of `config.model` (a local folder); writes the files above and returns summary.json.

    `role` applies where `config.role` is unset. `engine` (an inference.Engine) is used instead
    of loading one; it is not closed here. `template` (an inference.templates.PromptTemplate)
    wraps instruct prompts; None = plain. `config.trust_model_code` allows running the answers
    without the namespace jail (see sandbox.py).
    """
    with names_full_disk(config.out_dir, "rerun the same command: it reuses the answers already saved"):
        return _evaluate(config, role, meta, engine, template, progress)


def _evaluate(config: EvalConfig, role: str, meta: dict | None, engine, template, progress: bool) -> dict:
    model, mode, split, limit = config.model, config.mode, config.split, config.limit
    role = config.role or role
    if role not in ROLES:
        raise EvaluationError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    out_dir = Path(config.out_dir)
    data_dir = Path(config.data_dir) if config.data_dir else None
    template_name = template.name if template is not None else None
    settings = GenerationSettings(config.max_new_tokens, config.temperature, config.n_samples,
                                  config.seed)
    sandbox = Sandbox(config.limits, trust_model_code=config.trust_model_code)
    owned = None

    def get_engine():
        nonlocal owned
        if engine is not None:
            return engine
        if owned is None:
            from inference import load_engine

            owned = load_engine(model, backend=config.backend, max_model_len=config.max_model_len,
                                dtype=config.dtype, seed=config.seed)
        return owned

    # All answers first, then the engine goes (its memory and cores), then the sandbox runs.
    plans = [_plan(name, model=model, mode=mode, split=split, limit=limit, data_dir=data_dir,
                   settings=settings, template=template) for name in config.benchmarks]
    engine_info = {"backend": config.backend, "dtype": compute_dtype(config.backend, config.dtype),
                   "max_model_len": config.max_model_len}
    try:
        answers = [_answers(plan, out_dir / plan.name, settings, get_engine, progress, engine_info)
                   for plan in plans]
    finally:
        if owned is not None:
            owned.close()
    per_benchmark = {}
    for plan, (records, generation) in zip(plans, answers):
        per_benchmark[plan.name] = _score(plan, records, out_dir / plan.name, settings,
                                          sandbox, progress, generation)
        log.info("%s %s pass@1 = %.4f", model, plan.name, per_benchmark[plan.name]["pass@1"])
    n_samples, temperature, max_new_tokens = settings.n_samples, settings.temperature, settings.max_new_tokens
    backend = config.backend
    benchmarks = {**_earlier_benchmarks(out_dir / SUMMARY_FILE, model, mode, split, n_samples,
                                        temperature, max_new_tokens, template_name),
                  **per_benchmark}
    summary = {
        "kind": SUMMARY_KIND, "version": 1, "model": model, "role": role, "meta": meta or {},
        "mode": mode, "backend": backend, "split": split, "limit": limit,
        "n_samples": n_samples, "temperature": temperature, "max_new_tokens": max_new_tokens,
        "template": template_name, "sandbox": _sandbox_info(sandbox),
        "parameters": parameter_count(model), "generation": _total_generation(benchmarks),
        "benchmarks": benchmarks,
    }
    _write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _earlier_benchmarks(path: Path, model: str, mode: str, split: str, n_samples: int,
                        temperature: float, max_new_tokens: int, template: str | None) -> dict:
    """Scores an earlier call saved in the same folder under the same settings, so that
    evaluating HumanEval and MBPP one at a time still yields one complete summary."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    keys = ("model", "mode", "split", "n_samples", "temperature", "max_new_tokens", "template")
    same = (model, mode, split, n_samples, temperature, max_new_tokens, template) == tuple(
        earlier.get(key) for key in keys)
    return earlier.get("benchmarks", {}) if same else {}


@dataclass(frozen=True)
class _Plan:
    """One benchmark's tasks and prompts, and the settings its saved answers must match."""
    name: str
    mode: str
    tasks: list
    prompts: list
    wanted: dict


def _plan(name: str, *, model, mode, split, limit, data_dir,
          settings: GenerationSettings, template=None) -> _Plan:
    tasks = load_tasks(name, data_dir=data_dir, split=split, limit=limit)
    shots = mbpp_shots(data_dir) if name != "humaneval" and mode == "completion" else []
    wanted = {"model": model, "mode": mode, "split": split,
              "task_ids": [t.task_id for t in tasks], "max_new_tokens": settings.max_new_tokens,
              "temperature": settings.temperature, "n_samples": settings.n_samples,
              "seed": settings.seed, "template": template.to_dict() if template else None}
    return _Plan(name, mode, tasks, [build_prompt(t, mode, shots, template) for t in tasks], wanted)


def _answers(plan: _Plan, bench_dir: Path, settings: GenerationSettings, get_engine,
             progress: bool, engine_info: dict) -> tuple[list, dict]:
    """(the saved answers when they match the plan, else new ones (saved), their generation
    figures: see generation_figures)."""
    journal = AnswerJournal(bench_dir / PARTIAL_FILE, plan.wanted)
    records = _saved_generations(bench_dir, plan.wanted)
    if records is not None:
        journal.remove()  # stopped between writing the answers and removing it
        saved = json.loads((bench_dir / GENERATION_FILE).read_text())
        return records, generation_figures(records, saved.get("generation_s"), saved)
    records, seconds = generate_answers(get_engine(), plan.tasks, plan.prompts, settings,
                                        progress=f"{plan.name} answers" if progress else None, journal=journal)
    figures = generation_figures(records, seconds, engine_info)
    _write_jsonl(bench_dir / GENERATIONS_FILE, records)
    _write_json(bench_dir / GENERATION_FILE, {**plan.wanted, **figures})
    journal.remove()
    return records, figures


def generation_figures(records: list[dict], seconds: float | None, engine_info: dict) -> dict:
    """Generated tokens, generation seconds, tokens/s and the engine that made `records`
    (backend/dtype/max_model_len None where an older generation.json did not record them)."""
    tokens = sum(s.get("tokens", 0) for r in records for s in r["samples"])
    seconds = None if seconds is None else round(seconds, 2)  # as saved: a reuse recomputes the same rate
    return {"generated_tokens": tokens, "generation_s": seconds,
            "tokens_per_s": round(tokens / seconds, 2) if seconds else None,
            **{key: engine_info.get(key) for key in ("backend", "dtype", "max_model_len")}}


def _total_generation(benchmarks: dict) -> dict | None:
    """Tokens, seconds and tokens/s over every benchmark whose figures are known."""
    known = [b["generation"] for b in benchmarks.values()
             if b.get("generation", {}).get("generation_s")]
    if not known:
        return None
    tokens = sum(g["generated_tokens"] for g in known)
    seconds = sum(g["generation_s"] for g in known)
    return {"generated_tokens": tokens, "generation_s": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 2), "benchmarks_counted": len(known),
            "backends": sorted({str(g["backend"]) for g in known})}


def _score(plan: _Plan, records: list, bench_dir: Path, settings: GenerationSettings,
           sandbox: Sandbox, progress: bool, generation: dict) -> dict:
    stops = plan.prompts[0].stops if plan.prompts else ()
    results, seconds = score_answers(plan.tasks, records, plan.mode, stops, sandbox,
                                     n_samples=settings.n_samples, progress=progress)
    _write_jsonl(bench_dir / RESULTS_FILE, results)
    summary = {"benchmark": plan.name, **summarize(results),
               "skipped": sum(1 for r in records if r["skipped"]),
               "length_cut": sum(s["finish_reason"] == "length"
                                 for r in records for s in r["samples"]),
               "execution_s": round(seconds, 2), "generation": generation}
    _write_json(bench_dir / SUMMARY_FILE, {"kind": BENCHMARK_SUMMARY_KIND,
                                             "model": plan.wanted["model"], "mode": plan.mode,
                                             **summary})
    return summary


def _saved_generations(bench_dir: Path, wanted: dict) -> list[dict] | None:
    """The saved answers if they were made with `wanted`; None if there are none."""
    gen_file, settings_file = bench_dir / GENERATIONS_FILE, bench_dir / GENERATION_FILE
    if not gen_file.exists() or not settings_file.exists():
        return None
    saved = json.loads(settings_file.read_text())
    differ = [k for k in _GENERATION_KEYS if saved.get(k) != wanted[k]]
    if differ:
        raise EvaluationError(
            f"{gen_file} was generated with other settings ({', '.join(differ)}); "
            "delete it or choose another output directory")
    log.info("reusing %s", gen_file)
    with open(gen_file) as f:
        return [json.loads(line) for line in f]


def _sandbox_info(sandbox: Sandbox) -> dict:
    limits = sandbox.limits
    return {"isolation": sandbox.isolation, "isolation_reason": sandbox.isolation_reason,
            "trust_model_code": sandbox.trust_model_code, "workers": sandbox.workers,
            "timeout_s": limits.timeout_s, "memory_mb": limits.memory_mb,
            "max_processes": limits.max_processes}


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    _write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
