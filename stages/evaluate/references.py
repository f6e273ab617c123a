"""`akd data references`: a benchmark's training-split reference solutions as a dataset, the
yardstick every student is measured on whichever teacher trained it.

Each row asks the MBPP instruct prompt exactly as `akd eval` asks it (and as verified answers
do) and answers with the task's human-written reference program inside a ```python fence, the
shape the instruct models answer in, so that a model's NLL on it measures the code rather than
the surprise of a bare program. Only the train split is offered: test tasks are never scored
into a cache. `akd teacher-cache --dataset FILE --responses-from output` scores the file; a
distillation run reads that cache with `--probe-cache`. FILE.meta.json records the counts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_write
from common.settings import setting
from stages.evaluate.datasets import load_tasks
from stages.evaluate.errors import EvaluationError
from stages.evaluate.prompts import build_prompt
from stages.evaluate.verified import TRAINING_SPLITS, meta_path


@dataclass
class ReferenceAnswersConfig:
    out: str = setting(help="The JSON-lines file to write (instruction, input, output, task_id).")
    benchmark: str = setting("mbpp", "Whose train-split references.", choices=("mbpp", "mbpp_sanitized"))
    split: str = setting("train", "The split (training splits only).", choices=TRAINING_SPLITS)
    data_dir: str | None = setting(None, "Where MBPP lives, as for akd eval (default: akd_data).")


def reference_answers(config: ReferenceAnswersConfig) -> dict:
    """Write config.out (and its .meta.json); returns the counts written there."""
    tasks = load_tasks(config.benchmark, split=config.split,
                       data_dir=Path(config.data_dir) if config.data_dir else None)
    rows, empty = [], []
    for task in tasks:
        code = task.reference.strip()
        if not code:
            empty.append(task.task_id)
            continue
        rows.append({"instruction": build_prompt(task, "instruct").messages[0]["content"], "input": "",
                     "output": f"```python\n{code}\n```", "task_id": task.task_id})
    if not rows:
        raise EvaluationError(f"{config.benchmark} {config.split}: no task has a reference solution")
    out = Path(config.out)
    atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    report = {"kind": "akd-reference-answers", "benchmark": config.benchmark, "split": config.split,
              "n_tasks": len(tasks), "kept": len(rows), "left_out": {"no_reference": len(empty)} if empty else {},
              "out": str(out)}
    atomic_write(meta_path(out), (json.dumps(report, indent=2) + "\n").encode())
    return report
