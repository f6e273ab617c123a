"""A choice a plan makes between its steps (a template, an lr, a teacher), written to one JSON
file with its reason; later steps' commands read it when they run."""
from __future__ import annotations

import json
from pathlib import Path

from common.files import atomic_write_json
from study.engine.settings import ExperimentError


def write_choice(path: Path, choice: dict) -> dict:
    atomic_write_json(path, choice)
    return choice


def read_choice(path: Path) -> dict:
    if not path.exists():
        raise ExperimentError(f"{path} is missing: that choice has not been made yet")
    return json.loads(path.read_text())
