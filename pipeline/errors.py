"""Turns the errors a user can fix into one clean line instead of a traceback.

The one bridge from akd's errors to click: every command runs its body `with user_errors()`.
Subclasses ride on their base (CacheVerifyError on CacheError, ResponsesFileError on
TeacherConfigError, SandboxError on EvaluationError, SaveError on DistillError, ...);
tests/test_cli_errors.py checks that every error class akd declares is caught here or
is named as internal.
"""
from __future__ import annotations

import contextlib

import click

from cache_schema import CacheError
from inference import InferenceError
from inference.templates import TemplateError
from study.config import ExperimentError
from model_tools.gguf_models import ModelBuildError
from model_tools.prune import PruneError
from stages.distill.errors import DistillError
from stages.evaluate.errors import EvaluationError
from stages.teacher import TeacherConfigError

FIXABLE_ERRORS = (CacheError, InferenceError, TemplateError, ModelBuildError, DistillError,
                  EvaluationError, TeacherConfigError, PruneError, ExperimentError,
                  FileNotFoundError)


@contextlib.contextmanager
def user_errors():
    """Re-raise the errors a user can act on as click errors (exit 1, one line)."""
    try:
        yield
    except FIXABLE_ERRORS as exc:
        raise click.ClickException(one_line(exc)) from None


def one_line(exc: BaseException) -> str:
    """`TypeName: message`, a multi-line message joined with "; " (an error is one line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {'; '.join(lines)}"
