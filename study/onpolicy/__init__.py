"""Rounds of offline on-policy distillation as an experiment definition: settings and steps
(rounds.py), running them on the engine (run.py), the rounds' summary (summary.py)."""
