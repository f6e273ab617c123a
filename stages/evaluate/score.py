"""Run every answer's code against its task's tests and count what passed."""
from __future__ import annotations

import time

from tqdm import tqdm

from stages.evaluate.datasets import Task
from stages.evaluate.errors import EvaluationError
from stages.evaluate.extract import solution_from_answer
from stages.evaluate.metrics import pass_at_ks, status_counts
from stages.evaluate.sandbox import Sandbox

SKIPPED = "skipped"  # a prompt that never reached the model: scored as a failure


def score_answers(tasks: list[Task], records: list[dict], mode: str, stops: tuple[str, ...],
                  sandbox: Sandbox, n_samples: int = 1,
                  progress: bool = False) -> tuple[list[dict], float]:
    """(one result per task, execution seconds). `records` come from generate_answers, in
    task order; a skipped task counts as `n_samples` failures."""
    jobs = []  # (task index, solution)
    for t, (task, record) in enumerate(zip(tasks, records)):
        if record["task_id"] != task.task_id:
            raise EvaluationError(f"generation record {t} is {record['task_id']}, expected "
                             f"{task.task_id}")
        for sample in record["samples"]:
            jobs.append((t, solution_from_answer(task, sample["text"], mode, stops)))
    start = time.monotonic()
    with tqdm(total=len(jobs), desc="sandbox", unit="prog", disable=not progress) as bar:
        outcomes = sandbox.run_many([tasks[t].program(code) for t, code in jobs],
                                    progress=bar.update)
    seconds = time.monotonic() - start
    results = [{"task_id": task.task_id, "statuses": [], "messages": [], "durations_s": [],
                "solutions": []} for task in tasks]
    for (t, code), outcome in zip(jobs, outcomes):
        row = results[t]
        row["statuses"].append(outcome.status)
        row["messages"].append(outcome.message)
        row["durations_s"].append(round(outcome.duration_s, 4))
        row["solutions"].append(code)
    for row, record in zip(results, records):
        if record["skipped"]:
            row["statuses"] = [SKIPPED] * n_samples
            row["messages"] = [record["skipped"]] * n_samples
        row["n"] = len(row["statuses"])
        row["c"] = row["statuses"].count("passed")
    return results, seconds


def summarize(results: list[dict], ks=(1, 10, 100)) -> dict:
    """pass@1 (and pass@k where every task has k samples) over all tasks, skipped included."""
    counts = [(r["n"], r["c"]) for r in results]
    metrics = pass_at_ks(counts, ks)
    return {
        "n_tasks": len(results),
        "pass@1": metrics.get("pass@1"),
        "pass@k": metrics,
        "status_counts": status_counts(s for r in results for s in r["statuses"]),
    }
