"""Click options generated from a stage's config dataclass, so each option is written once.

The type, default, help and choices of an option all come from the field (see
common/settings.py); a field typed `X | None` with default None is an optional option, and
a nested config dataclass adds its own fields, with the defaults of the enclosing
field's default instance. `common.settings.build_config` turns the
values click passes back into the config.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click

from common.settings import flag_of, option_defaults, value_type

_CLICK_TYPES = {int: int, float: float, str: str, Path: click.Path(path_type=Path)}


def dataclass_options(cls, skip: tuple[str, ...] = (), required: tuple[str, ...] = ()):
    """Decorator adding one option per field of `cls` (defaults shown in --help)."""

    def decorate(command):
        for owner, field, default in reversed(option_defaults(cls, skip)):
            command = _option(owner, field, default, field.name in required)(command)
        return command

    return decorate


def _option(cls, field: dataclasses.Field, default, required: bool):
    """`default`: the field's default in this command (option_defaults)."""
    flag, help_text = flag_of(field), field.metadata.get("help") or None
    if default is dataclasses.MISSING:
        default, required = None, True
    kind, _ = value_type(cls, field)
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", field.name, default=default,
                            show_default=True, help=help_text)
    if typing.get_origin(kind) in (tuple, list):
        item = typing.get_args(kind)[0] if typing.get_args(kind) else str
        return click.option(flag, field.name, type=_CLICK_TYPES.get(item, str), multiple=True,
                            default=None if required else tuple(default or ()), show_default=True,
                            required=required,
                            help=help_text)
    choices = field.metadata.get("choices")
    click_type = click.Choice(list(choices)) if choices else _CLICK_TYPES.get(kind, str)
    if required:  # no default at all: click 8.3+ takes an explicit default=None as a value given
        return click.option(flag, field.name, type=click_type, required=True, help=help_text)
    return click.option(flag, field.name, type=click_type, default=default,
                        show_default=default is not None, help=help_text)

