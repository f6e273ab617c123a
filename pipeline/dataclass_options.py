"""Click options generated from a stage's config dataclass, so each option is written once."""
from __future__ import annotations

import dataclasses
import typing

import click


def dataclass_options(cls, skip: tuple[str, ...] = (), helps: dict[str, str] | None = None,
                      only: tuple[str, ...] | None = None):
    """Decorator adding one `--field-name` option per dataclass field (defaults shown); `only`:
    just those fields."""
    helps = helps or {}
    hints = typing.get_type_hints(cls)

    def decorate(command):
        for field in reversed(dataclasses.fields(cls)):
            if field.name in skip or (only is not None and field.name not in only):
                continue
            flag = "--" + field.name.replace("_", "-")
            kind = hints[field.name]
            default = field.default if field.default is not dataclasses.MISSING else None
            if kind is bool:
                option = click.option(f"{flag}/--no-{field.name.replace('_', '-')}", field.name,
                                      default=default, show_default=True, help=helps.get(field.name))
            else:
                base = {int: int, float: float}.get(kind, str)
                option = click.option(flag, field.name, type=base, default=default, show_default=True,
                                      help=helps.get(field.name))
            command = option(command)
        return command

    return decorate
