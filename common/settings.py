"""A setting is declared once, as a dataclass field; its CLI flag, help and choices ride along.

`setting(...)` puts the help text (and choices, or a flag name other than `--field-name`)
in the field's metadata. The CLI builds its options from the fields
(pipeline/dataclass_options.py) and the study turns a config back into the same
command-line arguments (`to_cli_args`), so neither retypes a default.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
            flag: str | None = None, default_factory: Any = dataclasses.MISSING,
            cli: bool = True):
    """A dataclass field with its command-line face. `cli=False`: not an option."""
    metadata = {"help": help, "choices": choices, "flag": flag, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str:
    """`--max-new-tokens` for max_new_tokens, unless the field names another flag."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def is_option(field: dataclasses.Field) -> bool:
    return field.metadata.get("cli", True) and not field.name.startswith("_")


def value_type(cls, field: dataclasses.Field):
    """The field's type with `| None` removed: (type, is_optional)."""
    kind = typing.get_type_hints(cls)[field.name]
    args = typing.get_args(kind)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else str), True
    return kind, False


def default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def option_fields(cls, skip: tuple[str, ...] = ()) -> list[tuple[type, dataclasses.Field]]:
    """(owning class, field) of every option, nested config dataclasses flattened in place.

    A field whose type is itself a dataclass (DistillConfig.loss: LossConfig) contributes
    its own fields, so a nested config's settings are options of the outer command too.
    """
    return [(owner, field) for owner, field, _ in option_defaults(cls, skip)]


def option_defaults(cls, skip: tuple[str, ...] = ()) -> list[tuple[type, dataclasses.Field, Any]]:
    """(owning class, field, default) of every option, as option_fields lists them.

    A nested field's default comes from the enclosing field's default instance, so
    `sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(n=4))`
    makes `--n` default to 4 in this command while SamplingSettings' own default stays 1.
    """
    found = list(_walk(cls, skip, dataclasses.MISSING))
    seen = {}
    for owner, field, _ in found:
        flag = flag_of(field)
        if flag in seen:
            raise TypeError(f"{flag} is declared twice: {seen[flag].__name__} and {owner.__name__}")
        seen[flag] = owner
    return found


def _walk(cls, skip: tuple[str, ...], defaults):
    """Yield (owner, field, default); `defaults`: the enclosing default instance, or MISSING."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not is_option(field):
            continue
        default = _default_in(defaults, field)
        if dataclasses.is_dataclass(hints[field.name]):
            yield from _walk(hints[field.name], skip, default)
        else:
            yield cls, field, default


def _default_in(defaults, field: dataclasses.Field):
    """The field's default: its value in the enclosing default instance, else its own."""
    if defaults is not dataclasses.MISSING:
        return getattr(defaults, field.name)
    return default_of(field)


def build_config(cls, options: dict, _defaults=dataclasses.MISSING):
    """`cls` from flat option values (as the generated CLI passes them), nesting rebuilt.

    A nested config missing from `options` keeps the enclosing field's default instance
    (and each of its settings missing from `options` keeps its value there)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            values[field.name] = build_config(hints[field.name], options,
                                              _default_in(_defaults, field))
        elif field.name in options:
            values[field.name] = options[field.name]
    if _defaults is not dataclasses.MISSING:
        return dataclasses.replace(_defaults, **values)
    return cls(**values)


def to_cli_args(config, *, skip: tuple[str, ...] = (), all_fields: bool = False,
                _defaults=dataclasses.MISSING) -> list[str]:
    """The command-line arguments that rebuild `config` through its generated options.

    Only settings that differ from their default (as the generated option shows it, see
    option_defaults) are written (all of them with `all_fields`), so a recorded command
    stays short and reads as what was chosen.
    """
    args: list[str] = []
    for field in dataclasses.fields(config):
        if not is_option(field) or field.name in skip:
            continue
        value, default = getattr(config, field.name), _default_in(_defaults, field)
        if dataclasses.is_dataclass(value):
            args += to_cli_args(value, skip=skip, all_fields=all_fields, _defaults=default)
            continue
        if not all_fields and value == default:
            continue
        flag = flag_of(field)
        kind, _ = value_type(type(config), field)
        if kind is bool:
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            for item in value:
                args += [flag, str(item)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def option_values(config) -> dict[str, Any]:
    """{field name: value} of every option of `config`, nested configs flattened (the names
    the command line passes to build_config)."""
    values = {}
    for field in dataclasses.fields(config):
        if not is_option(field):
            continue
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            values.update(option_values(value))
        else:
            values[field.name] = value
    return values


def option_default(cls, name: str):
    """The default option `name` (a field name, nested ones included) has in `cls`'s command."""
    for _, field, default in option_defaults(cls):
        if field.name == name:
            return default
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def option_flag(cls, name: str) -> str:
    """The command-line flag of option `name` (a field name, nested ones included) of `cls`'s command."""
    for _, field in option_fields(cls):
        if field.name == name:
            return flag_of(field)
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def unknown_options(cls, options: dict) -> list[str]:
    """The names in `options` that are no option of `cls`'s command (nested ones included), sorted."""
    return sorted(set(options) - {field.name for _, field in option_fields(cls)})


def choice_problems(config) -> list[str]:
    """One line per setting of `config` (nested configs included) whose value is not one of the
    choices its field declares: `--device must be one of auto, cpu, cuda, got 'tpu'`."""
    problems = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            problems += choice_problems(value)
            continue
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"{flag_of(field)} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return problems
