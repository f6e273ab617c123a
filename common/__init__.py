"""Small helpers every package may use: settings declared once, safe file writes.

Imports nothing of akd, so the cache contract, the engines, the stages and the study can
all depend on it without breaking the dependency rule.
"""
