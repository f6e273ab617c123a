"""Experiments over akd's stages: an engine (study/engine/) and the experiments defined on it
(study/grid_v2/, study/onpolicy/), plus the accuracy-loss report over evaluations.

The study drives the stages only through their config classes, contracts and commands (each
step is one `akd` process); it never imports the CLI.
"""
