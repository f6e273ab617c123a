"""Turns the errors a user can fix into one clean line instead of a traceback.

The one bridge from akd's errors to click: every command is an `AkdCommand` (groups are
`AkdGroup`s, whose subcommands are AkdCommands by default), whose whole body runs inside
`user_errors()`, so no command can forget it. Subclasses ride on their base
(CacheVerifyError on CacheError, ResponsesFileError on TeacherConfigError, SandboxError on
EvaluationError, SaveError on DistillError, ...); tests/test_cli_errors.py checks that every
error class akd declares is caught here or is named as internal, and that every command is
an AkdCommand.
"""
from __future__ import annotations

import contextlib
import functools

import click

from cache_schema import CacheError
from common.files import DiskFullError, is_disk_full
from common.model_folders import ModelFolderError
from common.settings_files import SettingsFileError
from inference import InferenceError
from inference.templates import TemplateError
from model_tools.gguf_models import ModelBuildError
from model_tools.prune import PruneError
from stages.distill.errors import DistillError
from stages.evaluate.errors import EvaluationError
from stages.teacher import TeacherConfigError
from study.engine.settings import ExperimentError

FIXABLE_ERRORS = (CacheError, InferenceError, TemplateError, ModelBuildError, DistillError,
                  EvaluationError, TeacherConfigError, PruneError, ExperimentError,
                  ModelFolderError, SettingsFileError, FileNotFoundError, DiskFullError)


@contextlib.contextmanager
def user_errors():
    """Re-raise the errors a user can act on as click errors (exit 1, one line)."""
    try:
        yield
    except FIXABLE_ERRORS as exc:
        raise click.ClickException(one_line(exc)) from None
    except OSError as exc:  # a full disk met where no stage named its folder
        if not is_disk_full(exc):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        raise click.ClickException(f"DiskFullError: no space left on the device{where}; free some space "
                                   "and rerun the same command") from None


def one_line(exc: BaseException) -> str:
    """`TypeName: message`, a multi-line message joined with "; " (an error is one line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {'; '.join(lines)}"


class AkdCommand(click.Command):
    """A command whose whole body runs under `user_errors`."""

    def invoke(self, ctx: click.Context):
        with user_errors():
            return super().invoke(ctx)


class AkdGroup(click.Group):
    """A group whose subcommands (and subgroups) are AkdCommands (AkdGroups) unless told otherwise."""

    command_class = AkdCommand
    group_class = type  # subgroups are of this group's class


akd_command = functools.partial(click.command, cls=AkdCommand)
akd_group = functools.partial(click.group, cls=AkdGroup)
