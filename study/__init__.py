"""The experiment grid: which runs to make, running them as `akd` commands, and the report.

The study drives the stages only through their config classes and commands (each step is
one `akd` process); it never imports the CLI.
"""
