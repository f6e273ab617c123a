"""The study's engine, which knows no experiment: steps and their checks (steps.py), running a
plan once each, resumably (runner.py), keeping finished steps across machines (keep.py),
recorded settings (settings.py), paired statistics (stats.py), readers of runs and evaluations
(results.py), bar charts (chart.py). An experiment is a definition that builds a plan of
steps and a report from these: study/grid_v2/, study/onpolicy/."""
