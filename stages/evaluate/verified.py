"""`akd data verified-answers`: a model's MBPP-train answers that pass their own asserts, as
a training dataset.

Run `akd eval --model TEACHER --benchmark mbpp --split train --out DIR` first (MBPP tasks
601-974, which exist for training; test and HumanEval stay untouched), then this keeps, per
task, the first answer whose program passed the task's asserts and writes CodeAlpaca-shaped
JSON lines:

  instruction  the MBPP instruct prompt exactly as `akd eval` asks it and a student sees it
               at training time: the task text, "Your code should pass these tests:" and
               the asserts (prompts.py); the same words under any teacher template
  input        ""
  output       the model's full raw answer text (not just the extracted program: a student
               learns the teacher's style and stopping too)
  task_id      "Mbpp/601"

An answer cut at max_new_tokens is left out even when its code passed (its text stops
mid-way; a student would learn not to stop), unless asked. The file feeds
`akd teacher-cache --dataset FILE --responses-from output` (score mode) or plain
generation. FILE.meta.json beside it records the counts and where the answers came from.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write as write_atomic
from common.settings import setting
from stages.evaluate.datasets import load_tasks
from stages.evaluate.errors import EvaluationError
from stages.evaluate.eval_folder import GENERATION_FILE
from stages.evaluate.prompts import build_prompt
from stages.evaluate.saved import load_benchmark

TRAINING_SPLITS = ("train",)  # the only MBPP split meant for training


@dataclass
class VerifiedAnswersConfig:
    out: str = setting(help="The JSON-lines file to write (instruction, input, output, task_id).")
    benchmark: str = setting("mbpp", "Which MBPP the evaluation scored.",
                             choices=("mbpp", "mbpp_sanitized"))
    keep_length_cut: bool = setting(False, "Keep a passing answer that hit max_new_tokens (its "
                                           "text is cut off mid-way).")
    data_dir: str | None = setting(None, "Where MBPP lives, as for akd eval (default: akd_data).")


def meta_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.name.split('.')[0]}.meta.json")


def verified_answers(eval_dir: str | Path, config: VerifiedAnswersConfig) -> dict:
    """Write config.out (and its .meta.json); returns the counts written there."""
    saved = load_benchmark(eval_dir, config.benchmark)
    where = saved.folder / GENERATION_FILE
    if saved.split not in TRAINING_SPLITS:
        raise EvaluationError(f"{where}: split {saved.split!r}; training answers must come from "
                              f"the train split (akd eval --split train), never from tasks "
                              "a model is scored on")
    if saved.settings.get("mode") != "instruct":
        raise EvaluationError(f"{where}: mode {saved.settings.get('mode')!r}; verified answers "
                              "need instruct-mode answers (akd eval --mode instruct)")
    tasks = {t.task_id: t for t in load_tasks(config.benchmark, split=saved.split,
                                              data_dir=Path(config.data_dir) if config.data_dir else None)}
    plain = saved.settings.get("template") is None
    counts, rows = Counter(), []
    for line, (generation, result) in enumerate(zip(saved.generations, saved.results), 1):
        task = tasks.get(result["task_id"])
        if task is None:
            raise EvaluationError(f"{saved.folder}/results.jsonl line {line}: {result['task_id']!r} "
                                  f"is not a {config.benchmark} {saved.split} task")
        instruction = build_prompt(task, "instruct").messages[0]["content"]
        if not _asked(generation.get("prompt"), instruction, plain):
            raise EvaluationError(f"{saved.folder}/generations.jsonl line {line}: the prompt saved "
                                  f"for {task.task_id} is not the instruct prompt akd builds now; "
                                  "re-run akd eval")
        outcome, text = _choose(generation, result, config.keep_length_cut)
        counts[outcome] += 1
        if text is not None:
            rows.append({"instruction": instruction, "input": "", "output": text,
                         "task_id": task.task_id})
    out = Path(config.out)
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    report = {"kind": "akd-verified-answers", "eval_dir": str(eval_dir),
              "model": saved.settings.get("model"), "benchmark": config.benchmark,
              "split": saved.split, "template": saved.settings.get("template"),
              "max_new_tokens": saved.settings.get("max_new_tokens"),
              "n_tasks": len(saved.results), "kept": len(rows),
              "left_out": {k: v for k, v in sorted(counts.items()) if k != "kept"},
              "out": str(out)}
    write_atomic(meta_path(out), (json.dumps(report, indent=2) + "\n").encode())
    return report


def _asked(prompt, instruction: str, plain: bool) -> bool:
    """Whether the saved prompt asked `instruction`: as the only user turn (no template), or
    inside one of the template's messages."""
    messages = prompt.get("messages") if isinstance(prompt, dict) else None
    if plain:
        return messages == [{"role": "user", "content": instruction}]
    return any(instruction in str(m.get("content")) for m in messages or [])


def _choose(generation: dict, result: dict, keep_length_cut: bool) -> tuple[str, str | None]:
    """(outcome, answer text or None): the first passing sample, if its text is usable."""
    samples = generation.get("samples") or []
    passing = [i for i, status in enumerate(result["statuses"]) if status == "passed"]
    if not passing:
        return "not_passed", None
    usable = [i for i in passing if i < len(samples)
              and (keep_length_cut or samples[i].get("finish_reason") != "length")]
    if not usable:
        return "length_cut", None
    text = samples[usable[0]].get("text")
    if not isinstance(text, str) or not text.strip():
        return "empty_answer", None
    return "kept", text
