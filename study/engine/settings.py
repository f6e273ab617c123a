"""Settings an experiment records beside its outputs, and the error every study part raises.

An experiment's settings are a frozen dataclass with `out_dir`; the first run records them,
a later run with other settings is refused (the outputs already made would silently mix two
experiments), and commands that only look (status, report) read them back.

Some changes are decided from an experiment's own early results (how many answers a task
decide most per CPU hour, how many held-out checks a run needs). A definition declares them
as `Revision`s, its dataclass's defaults holding the new values: a run in a folder recorded
before a revision moves each of its settings from the old value to the new one, notes the
revision in the record, and the steps that started before it keep the commands they started
with (study/engine/runner.py: `carry_over`). Any other difference is still refused.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

UNCOMPARED = ("trust_model_code", "keep_dir")  # may differ between runs of one experiment: no output depends on them
REVISIONS_KEY = "revisions"  # the record's list of the revisions it went through


class ExperimentError(ValueError):
    """A setting or an output folder the experiment cannot work with."""


@dataclasses.dataclass(frozen=True)
class Revision:
    """A deliberate change of settings in an experiment that has started: setting -> (before, after)."""
    name: str
    changes: dict
    why: str


def split_list(text: str) -> list[str]:
    """A comma-separated setting as its parts (list settings are one CLI option each)."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclasses.dataclass
class Revised:
    """What a run found in a record made before some revisions: the settings the record held
    (its steps' commands were built from them), and each revision applied now with the changes
    it made there."""
    before: object
    applied: list[dict]

    def describe(self) -> str:
        return "; ".join(f"{r['name']}: " + ", ".join(f"{k} {b!r} -> {a!r}" for k, (b, a) in r["changes"].items())
                         for r in self.applied)


def _recorded(cls, out_dir: str, record: dict, revisions=()) -> dict:
    """A record's settings as its steps used them. A setting added since it was written reads as
    its value before the first revision the record has not been through that changes it, or as
    its default where no revision names it."""
    done = {r["name"] for r in record.get(REVISIONS_KEY, [])}
    earlier = {}
    for revision in reversed([r for r in revisions if r.name not in done]):
        earlier.update({key: before for key, (before, _) in revision.changes.items()})
    defaults = dataclasses.asdict(cls(out_dir=out_dir))
    fields = {f.name for f in dataclasses.fields(cls)}
    return {**defaults, **earlier, **{k: v for k, v in record.items() if k in fields}}


def check_settings(config, path: Path, what: str = "grid", revisions=(),
                   advice: str = "use another --out-dir or delete it") -> Revised | None:
    """Refuse settings that differ from the record at `path` in anything but `revisions` not yet
    applied there (one line naming the first difference). Returns what would be revised, or
    None where the record is missing or the same."""
    path = Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    saved = _recorded(type(config), config.out_dir, record, revisions)
    before = dict(saved)
    done = {r["name"] for r in record.get(REVISIONS_KEY, [])}
    applied = []
    for revision in revisions:
        if revision.name in done:
            continue
        changes = {key: (old, new) for key, (old, new) in revision.changes.items()
                   if saved.get(key) == old and getattr(config, key) == new}
        saved.update({key: new for key, (_, new) in changes.items()})
        if changes:
            applied.append({"name": revision.name, "changes": changes, "why": revision.why})
    changed = [f"{key}: the {what} in place has {saved.get(key)!r}, this command has {value!r}"
               for key, value in dataclasses.asdict(config).items()
               if key not in UNCOMPARED and saved.get(key) != value]
    if changed:
        raise ExperimentError(f"{path}: {changed[0]}" + (f" (and {len(changed) - 1} more)"
                              if len(changed) > 1 else "") + f"; {advice}")
    return Revised(type(config)(**before), applied) if applied else None


def save_settings(config, path: Path, revised: Revised | None = None, revisions=()) -> None:
    """Write the record: a new one notes every declared revision as there from the start; a
    revised one adds those just applied, with when."""
    path = Path(path)
    if path.exists():
        history = json.loads(path.read_text()).get(REVISIONS_KEY, [])
    else:
        history = [{"name": r.name, "applied": "from the start"} for r in revisions]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history += [{"name": r["name"], "applied": now, "changes": {k: list(v) for k, v in r["changes"].items()},
                 "why": r["why"]} for r in (revised.applied if revised else [])]
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**dataclasses.asdict(config), **({REVISIONS_KEY: history} if history else {})}
    path.write_text(json.dumps(record, indent=2) + "\n")


def save_or_check_settings(config, path: Path, what: str = "grid") -> None:
    """Record a frozen settings dataclass (with `out_dir`) in `path`, or refuse one that
    differs from the record, naming the first difference (for definitions without revisions)."""
    if not Path(path).exists():
        save_settings(config, path)
    else:
        check_settings(config, path, what)


def load_settings(cls, out_dir, file_name: str, command: str, revisions=()):
    """The settings a run recorded in OUT_DIR/file_name (fields added since read as `_recorded` says)."""
    path = Path(out_dir) / file_name
    if not path.exists():
        raise ExperimentError(f"{path} does not exist: no `{command}` has been started in {out_dir}")
    record = json.loads(path.read_text())
    settings = cls(**_recorded(cls, record.get("out_dir", str(out_dir)), record, revisions))
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
