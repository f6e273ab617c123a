"""Evaluation folders with canned answers: the tiny model generates (HF backend), then its
answers are replaced by chosen texts and evaluate_model re-scores them in the real sandbox."""
import json
from pathlib import Path

from stages.evaluate import EvalConfig, evaluate_model, load_tasks


def reference_answer(task) -> str:
    """A chatty answer whose code block is the task's reference solution (it passes)."""
    return f"Here is the function:\n```python\n{task.reference.strip()}\n```\nIt works.\n"


WRONG_ANSWER = "```python\ndef nothing():\n    return None\n```"


def canned_eval(out: Path, model: Path, data_dir: Path, benchmark: str, split: str,
                answers) -> dict:
    """Evaluate `model` on the first len(answers) tasks, then re-score with `answers`:
    one callable per task, task -> (text, finish_reason). Returns the final summary."""
    kwargs = dict(model=str(model), out_dir=out, benchmarks=(benchmark,), backend="hf",
                  split=split, limit=len(answers), max_new_tokens=8, max_model_len=1024,
                  data_dir=data_dir, trust_model_code=True)
    evaluate_model(EvalConfig(**kwargs))
    tasks = load_tasks(benchmark, data_dir=data_dir, split=split, limit=len(answers))
    path = out / benchmark / "generations.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record, task, answer in zip(records, tasks, answers):
        text, finish = answer(task)
        record["samples"][0].update(text=text, finish_reason=finish)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return evaluate_model(EvalConfig(**{**kwargs, "backend": "no-such-backend"}))


def give_passing_mbpp_train_answers(folder: Path) -> None:
    """The tiny teacher passes no MBPP task: its saved answers (every sample) become the reference
    solutions and its scores go, so the resumed grid re-scores them (akd eval reuses saved answers)."""
    tasks = {t.task_id: t for t in load_tasks("mbpp", split="train")}
    path = folder / "mbpp" / "generations.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        for sample in record["samples"]:
            sample.update(text=reference_answer(tasks[record["task_id"]]), finish_reason="stop")
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "summary.json").unlink()
    (folder / "mbpp" / "results.jsonl").unlink()
