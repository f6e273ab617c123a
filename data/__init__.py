"""The data akd's defaults use (HumanEval, MBPP, CodeAlpaca-2k); see SOURCES.md.

Installed as the package `akd_data` so that a non-editable install finds it too.
"""
