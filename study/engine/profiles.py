"""Measured machine profiles: what a CPU class did, kept as data written from measurements.

profiles/<CPU class>.json (the class from common.machine.cpu_class) holds each figure with what
it rests on and the machine it was measured on. A figure the class's profile lacks comes from
the reference profile (avx512_bf16.json) and says so; a class with no profile at all is
estimated from the reference. Add a figure to a profile when a step's record measures it.
Experiments' cost estimates (study/grid_v2/cost.py, study/grid_v3/cost.py) read them here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common.machine import cpu_class, machine_facts

PROFILES_DIR = Path(__file__).parent / "profiles"
REFERENCE_CLASS = "avx512_bf16"
# what every estimate rests on that no CPU changes: tasks per benchmark and split, and grid v2's
# MBPP-train figures (the teacher passes about half of those tasks, with short answers)
BENCHMARK_TASKS = {("humaneval", "test"): 164, ("mbpp", "test"): 500, ("mbpp", "train"): 374,
                   ("mbpp", "selection"): 100}
MBPP_TRAIN_KEPT, MBPP_ANSWER_TOKENS = 0.55, 130
MBPP_REFERENCE_TOKENS = 62  # MBPP train's reference programs in a python fence: 23,228 tokens over 374


@dataclass(frozen=True)
class Profile:
    """One CPU class's measured figures (name -> value), each with where it came from."""
    cpu_class: str
    figures: dict
    sources: dict  # name -> "measured on <class>: <basis>" or the reference's, labelled

    def __getitem__(self, name: str):
        return self.figures[name]

    def borrowed(self) -> list[str]:
        """The figures this class has not measured (taken from the reference profile)."""
        return [name for name, source in self.sources.items() if source.startswith("not measured")]


def load_profile(cls: str | None = None) -> Profile:
    """The profile of CPU class `cls` (default: this machine's), completed from the reference."""
    cls = cls or cpu_class(machine_facts())
    reference = _read(REFERENCE_CLASS)
    own = _read(cls) if (PROFILES_DIR / f"{cls}.json").exists() else {"figures": {}}
    figures, sources = {}, {}
    for name, (value, basis) in reference["figures"].items():
        mine = own["figures"].get(name)
        if mine is None:
            figures[name] = value
            sources[name] = (f"{REFERENCE_CLASS}: {basis}" if cls == REFERENCE_CLASS
                             else f"not measured on {cls}; {REFERENCE_CLASS}'s: {basis}")
            continue
        mine_value, mine_basis = mine
        if isinstance(value, dict):  # per-model figures: the class's where measured
            mine_value, mine_basis = _fill_models(value, mine_value, mine_basis)
        figures[name], sources[name] = mine_value, f"{cls}: {mine_basis}"
    return Profile(cls, figures, sources)


def _fill_models(reference: dict, mine: dict, basis: str) -> tuple[dict, str]:
    """A per-model figure this class measured for some models only: the others are the reference's
    scaled by the ratio this class measured (a 2-core AVX2 CPU is slower for every model, not just
    the one measured), and the basis says so."""
    missing = [model for model in reference if model not in mine]
    if not missing:
        return mine, basis
    ratios = [mine[m] / reference[m] for m in mine if reference.get(m)]
    scale = sum(ratios) / len(ratios) if ratios else 1.0
    filled = {m: round(reference[m] * scale, 3) for m in missing}
    return {**filled, **mine}, (f"{basis}; {', '.join(missing)} not measured here: {REFERENCE_CLASS}'s x "
                                f"{scale:.3g}, the ratio measured for {', '.join(mine)}")


def _read(cls: str) -> dict:
    return json.loads((PROFILES_DIR / f"{cls}.json").read_text())
