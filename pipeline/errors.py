"""Turns the errors a user can fix into one clean line instead of a traceback."""
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
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
