"""Settings an experiment records beside its outputs, and the error every study part raises.

An experiment's settings are a frozen dataclass with `out_dir`; the first run records them,
a later run with other settings is refused (the outputs already made would silently mix two
experiments), and commands that only look (status, report) read them back.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

UNCOMPARED = ("trust_model_code", "keep_dir")  # may differ between runs of one experiment: no output depends on them


class ExperimentError(ValueError):
    """A setting or an output folder the experiment cannot work with."""


def split_list(text: str) -> list[str]:
    """A comma-separated setting as its parts (list settings are one CLI option each)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def save_or_check_settings(config, path: Path, what: str = "grid") -> None:
    """Record a frozen settings dataclass (with `out_dir`) in `path`, or refuse one that
    differs from the record, naming the first difference. A setting added since the record
    was written reads as its default there."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        return
    defaults = dataclasses.asdict(type(config)(out_dir=config.out_dir))
    saved = {**defaults, **json.loads(path.read_text())}  # settings added since keep their default
    changed = [f"{key}: the {what} in place has {saved.get(key)!r}, this command has {value!r}"
               for key, value in dataclasses.asdict(config).items()
               if key not in UNCOMPARED and saved.get(key) != value]
    if changed:
        raise ExperimentError(f"{path}: {changed[0]}" + (f" (and {len(changed) - 1} more)"
                              if len(changed) > 1 else "") + "; use another --out-dir or delete it")


def load_settings(cls, out_dir, file_name: str, command: str):
    """The settings a run recorded in OUT_DIR/file_name (fields added since keep their default)."""
    path = Path(out_dir) / file_name
    if not path.exists():
        raise ExperimentError(f"{path} does not exist: no `{command}` has been started in {out_dir}")
    fields = {f.name for f in dataclasses.fields(cls)}
    settings = cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in fields})
    recorded = Path(settings.out_dir)
    if recorded.resolve() != Path(out_dir).resolve():
        # Its steps' commands and folders are relative to where it ran: read from anywhere
        # else, every step would look pending and the report empty, without a word.
        raise ExperimentError(
            f"{path} records its folder as {settings.out_dir!r}"
            + (", relative to the folder it ran from" if not recorded.is_absolute() else "")
            + f"; from {Path.cwd()} that is another folder: run this command from the folder the "
            f"experiment ran in (there: --out-dir {settings.out_dir})")
    return settings
