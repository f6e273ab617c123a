"""Model folders akd works on: the real pair built from PyPI GGUF parts, and pruned students."""
