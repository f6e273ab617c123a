"""Answers from a model for a list of tasks, through the shared inference engines.

Prompts too long for the engine (prompt + max_new_tokens over max_model_len) never reach
it (vLLM would abort the whole batch): they are recorded as skipped, and score as failures.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from inference import SamplingSpec, render_prompt
from stages.evaluate.answer_journal import AnswerJournal
from stages.evaluate.datasets import Task
from stages.evaluate.prompts import Prompt

log = logging.getLogger(__name__)
SKIP_TOO_LONG = "prompt_too_long"


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    temperature: float = 0.0
    n_samples: int = 1
    seed: int = 0


def prompt_ids(engine, prompt: Prompt) -> list[int]:
    if prompt.messages:
        return render_prompt(engine.tokenizer, list(prompt.messages))
    return [int(i) for i in engine.tokenizer(prompt.text, add_special_tokens=True)["input_ids"]]


def generate_answers(engine, tasks: list[Task], prompts: list[Prompt],
                     settings: GenerationSettings,
                     progress: str | None = None,
                     journal: AnswerJournal | None = None) -> tuple[list[dict], float]:
    """(one record per task, generation seconds). All prompts of a benchmark share their stop
    strings, so they go to the engine in one call, which batches them; `progress` labels the
    engine's progress bar (None: quiet). `journal`: each task's record is saved there as it
    finishes, and the tasks an earlier, stopped call answered are taken from it, not asked
    again (the seconds then include that call's)."""
    ids = [prompt_ids(engine, p) for p in prompts]
    budget = engine.max_model_len - settings.max_new_tokens
    keep = [i for i, p in enumerate(ids) if len(p) <= budget]
    if len(keep) < len(ids):
        log.warning("%d of %d prompts exceed max_model_len - max_new_tokens = %d tokens; "
                    "skipped (scored as failures)", len(ids) - len(keep), len(ids), budget)
    earlier, earlier_s = journal.read() if journal is not None else ({}, 0.0)
    todo = [i for i in keep if tasks[i].task_id not in earlier]
    if earlier:
        log.info("%d of %d tasks answered by an earlier call (%s); %d to go", len(keep) - len(todo), len(keep),
                 journal.path, len(todo))
    spec = SamplingSpec(max_new_tokens=settings.max_new_tokens,
                        temperature=settings.temperature, n=settings.n_samples,
                        seed=settings.seed, stop=prompts[0].stops if prompts else ())
    start = time.monotonic()

    def record(i: int, generations) -> dict:
        samples = [{"text": g.text, "finish_reason": g.finish_reason, "tokens": len(g.token_ids)}
                   for g in generations]
        return {"task_id": tasks[i].task_id, "prompt": prompts[i].to_json(), "prompt_tokens": len(ids[i]),
                "samples": samples, "skipped": None}

    def save(j: int, generations) -> None:
        journal.add(record(todo[j], generations), time.monotonic() - start)

    try:
        outputs = engine.generate([ids[i] for i in todo], spec, progress=progress,
                                  on_done=save if journal is not None else None) if todo else []
    finally:
        if journal is not None:
            journal.close()
    seconds = time.monotonic() - start
    tokens = sum(len(g.token_ids) for samples in outputs for g in samples)
    log.info("%d prompts answered in %.1f s: %d tokens, %.1f tokens/s", len(todo), seconds,
             tokens, tokens / seconds if seconds else 0.0)
    answered = {**{i: earlier[tasks[i].task_id] for i in keep if tasks[i].task_id in earlier},
                **{i: record(i, generations) for i, generations in zip(todo, outputs)}}
    records = [answered.get(i) or {"task_id": task.task_id, "prompt": prompt.to_json(), "prompt_tokens": len(ids[i]),
                                   "samples": [], "skipped": SKIP_TOO_LONG}
               for i, (task, prompt) in enumerate(zip(tasks, prompts))]
    return records, earlier_s + seconds
