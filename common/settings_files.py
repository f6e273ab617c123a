"""A command's settings in a file (YAML, TOML or JSON): the names and nesting of its config dataclass.

A run kept as a file can be reviewed, diffed and rerun. The file's schema is the dataclass
itself (`loss: {kind: akd, mu: 0.5}` for DistillConfig.loss), read through the same field
declarations as the command-line options (common/settings.py), so neither can drift from the
other. A distill run's config.json is such a file too: its `options` are read. A key the
dataclass does not declare, a value of the wrong type or outside the field's choices is
refused in one line naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any

import yaml

from common.settings import default_of, is_option, value_type

SUFFIXES = (".yaml", ".yml", ".toml", ".json")
TYPE_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "a string", Path: "a path"}


class SettingsFileError(ValueError):
    """A settings file that cannot be read, or names a setting wrongly."""


def read_settings_file(path: Path) -> dict:
    """The file's mapping; a run record (config.json: `layout` and `options`) gives its options."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise SettingsFileError(f"{path}: a settings file is {', '.join(SUFFIXES)}, not {path.suffix or 'no suffix'}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SettingsFileError(f"{path}: not valid {path.suffix[1:].upper()} ({_parse_problem(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsFileError(f"{path}: holds a {type(data).__name__}; a settings file is a mapping of names to values")
    if "layout" in data and isinstance(data.get("options"), dict):
        return data["options"]
    return data


def _parse_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:  # YAML: what and where
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return str(exc).splitlines()[0]


def file_options(cls, data: dict, path: Path, *, other: typing.Collection[str] = (),
                 lists: typing.Collection[str] = ()) -> dict[str, Any]:
    """{field name: value} of `data` read against `cls`, nested configs flattened as the command
    line names them. `other`: names the command takes beside cls's settings (checked there);
    `lists`: fields that may hold a list in the file (a command option that repeats them)."""
    flat: dict[str, Any] = {}
    _read(cls, data, Path(path), "", flat, set(other), set(lists))
    return flat


def _read(cls, data: dict, path: Path, prefix: str, flat: dict, other: set, lists: set) -> None:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    nested_owner = {inner.name: f.name for f in fields.values() if dataclasses.is_dataclass(hints[f.name])
                    for inner in dataclasses.fields(hints[f.name])}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            if not prefix and key in other:
                flat[key] = value
                continue
            if key in nested_owner:
                raise SettingsFileError(f"{path}: {where!r} belongs under '{prefix}{nested_owner[key]}:'")
            raise SettingsFileError(f"{path}: unknown setting {where!r} (the command's --print-config lists them)")
        field = fields[key]
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise SettingsFileError(f"{path}: {where!r} holds settings (a mapping), got {value!r}")
            _read(hints[key], value, path, f"{where}.", flat, other, lists)
            continue
        if not is_option(field):
            if value != default_of(field):
                raise SettingsFileError(f"{path}: {where!r} is fixed at {default_of(field)!r} and cannot be set")
            continue
        flat[key] = _checked(cls, field, value, path, where, key in lists)


def _checked(cls, field: dataclasses.Field, value, path: Path, where: str, may_be_list: bool):
    kind, optional = value_type(cls, field)
    if value is None:
        if optional:
            return None
        raise SettingsFileError(f"{path}: {where!r} cannot be empty")
    if may_be_list and isinstance(value, list):
        return [_checked(cls, field, item, path, where, False) for item in value]
    if typing.get_origin(kind) in (tuple, list):
        item_kind = (typing.get_args(kind) or (str,))[0]
        items = value if isinstance(value, list) else [value]
        return tuple(_one(item_kind, item, path, where) for item in items)
    checked = _one(kind, value, path, where)
    choices = field.metadata.get("choices")
    if choices and checked not in choices:
        raise SettingsFileError(f"{path}: {where!r} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return checked


def _one(kind, value, path: Path, where: str):
    """`value` as a `kind` where it is one (an int is a float too), else one line."""
    fits = {bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str), Path: isinstance(value, str)}.get(kind, True)
    if not fits:
        raise SettingsFileError(f"{path}: {where!r} must be {TYPE_NAMES.get(kind, kind)}, got {value!r}")
    return float(value) if kind is float else value


def nested_settings(cls, flat: dict[str, Any], other: dict[str, Any] | None = None) -> dict:
    """The file form of flat option values: cls's nesting rebuilt, tuples as lists, paths as
    strings, `other` (the command's own options) first; a field missing from `flat` is left out."""
    out = {key: _plain(value) for key, value in (other or {}).items()}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            inner = nested_settings(hints[field.name], flat)
            if inner:
                out[field.name] = inner
        elif is_option(field) and field.name in flat:
            if flat[field.name] is None and not value_type(cls, field)[1]:
                continue  # a command that fills it in itself (distill's run_dir from --runs-dir)
            out[field.name] = _plain(flat[field.name])
    return out


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def dump_yaml(settings: dict) -> str:
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=False, width=100)
