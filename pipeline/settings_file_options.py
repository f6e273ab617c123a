"""`--config FILE` and `--print-config` for a command whose options come from a config dataclass.

The file's values become the options' defaults (click's default_map, filled by an eager
option before any other is read), so a flag on the command line overrides the file and a
required option may come from either. What the file may hold and how it is checked is
common/settings_files.py; this module only wires it to click.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path

import click

from common.settings_files import SettingsFileError, dump_yaml, file_options, nested_settings, read_settings_file
from pipeline.errors import one_line

OWN_PARAMS = ("settings_file", "print_config")


def settings_file_options(cls, renames: dict[str, str] | None = None):
    """Decorator (below the command's, above its options) adding --config and --print-config.

    `renames`: a setting of `cls` the command takes under another option (distill's `student`
    as --student, repeatable for a sweep: {"student": "students"})."""
    renames = renames or {}

    def load(ctx: click.Context, param: click.Parameter, path: Path | None):
        if path is None:
            return None
        params = {p.name: p for p in ctx.command.params if p.name not in OWN_PARAMS}
        fields = _field_names(cls)
        others = [name for name in params if name not in fields and name not in renames.values()]
        try:
            flat = file_options(cls, read_settings_file(path), path, other=others, lists=renames)
            defaults = {renames.get(name, name): value for name, value in flat.items()}
            for name in others:
                if name in defaults:
                    defaults[name] = _converted(params[name], defaults[name], ctx, path)
            for name, target in renames.items():
                if target in defaults and not isinstance(defaults[target], list):
                    defaults[target] = [defaults[target]]
        except SettingsFileError as exc:
            raise click.ClickException(one_line(exc)) from None
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        return path

    def decorate(command):
        @functools.wraps(command)
        def run(*args, settings_file, print_config, **options):
            if print_config:
                back = {field: options.pop(target) for field, target in renames.items() if target in options}
                other = {k: v for k, v in options.items() if k not in _field_names(cls)}
                flat = {k: v for k, v in options.items() if k in _field_names(cls)}
                click.echo(dump_yaml(nested_settings(cls, {**flat, **back}, other)), nl=False)
                return None
            return command(*args, **options)

        run = click.option("--print-config", is_flag=True,
                           help="Print the settings this command would run with (the file's, then the "
                                "flags') as a --config file, and stop.")(run)
        return click.option("--config", "settings_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                            is_eager=True, callback=load,
                            help="Settings file (YAML, TOML or JSON; a run's config.json too), with the names "
                                 "and nesting --print-config shows; flags override it.")(run)

    return decorate


def _field_names(cls) -> set[str]:
    """Every field name of cls, nested configs' included."""
    hints = typing.get_type_hints(cls)
    names = set()
    for field in dataclasses.fields(cls):
        names.add(field.name)
        if dataclasses.is_dataclass(hints[field.name]):
            names |= _field_names(hints[field.name])
    return names


def _converted(param: click.Parameter, value, ctx: click.Context, path: Path):
    if not param.multiple and isinstance(value, (list, dict)):
        raise SettingsFileError(f"{path}: {param.name!r} takes one value, got {value!r}")
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise SettingsFileError(f"{path}: {param.name!r}: {exc.format_message()}") from None
