"""Evaluation stage: HumanEval/MBPP pass@k of teacher, student and distilled models.

Generation goes through the shared `inference` engines; every program runs in a contained
subprocess (sandbox.py, jail.py); scores and per-task results are saved beside the answers so
the study's report (study/accuracy_report.py) can be rebuilt without running anything again.
"""
from stages.evaluate.datasets import BENCHMARKS, Task, load_tasks
from stages.evaluate.errors import EvaluationError
from stages.evaluate.metrics import pass_at_k
from stages.evaluate.config import ROLES, EvalConfig
from stages.evaluate.run import evaluate_model
from stages.evaluate.sandbox import ExecResult, Limits, Sandbox

__all__ = ["BENCHMARKS", "ROLES", "EvalConfig", "EvaluationError", "ExecResult", "Limits", "Sandbox", "Task",
           "evaluate_model", "load_tasks", "pass_at_k"]
