"""Grid version 2 as an ordered list of steps, each one `akd` command (or an in-process choice)
with one output folder.

The order puts the most telling comparison first, so a grid stopped half-way still answers
something: the teacher's template (chosen on the selection split, plain included), the
off-policy cache, the budget, a short lr sweep for AKD (chosen on held-out FKL and the
selection split), the original student, AKD off-policy, AKD on-policy (student rollouts of
the same prompts scored by the teacher), then CE, KD and RKD, AKD on mixed on- and
off-policy data, AKD with the teacher's verified MBPP-train answers added, the teacher's
scores, the smaller (width-pruned) student with KD, RKD and AKD, and last the decode speed of
teacher, student and smaller student at a fixed answer length (`akd speed`). Every command is a
normal `akd` call run in its own process (study/runner.py), so the teacher's engine never
shares memory with a student being trained. Names and folders: study/arms.py.
"""
from __future__ import annotations

from study.grid_v2.arms import Grid
from study.grid_v2.config import ExperimentConfig
from study.engine.steps import Step


def build_plan(config: ExperimentConfig) -> list[Step]:
    return Grid(config).steps()
