"""Grid v2 (issue 13) as an experiment definition: its settings (config.py), arms and steps
(arms.py, plan.py), choices, budget and cost, the questions it answers (headline.py), its
report (report.py, tables.py, plots.py), and how it runs on the engine (run.py)."""
