"""A model card in every model folder akd writes (a distilled final/, a pruned model): README.md
with YAML front matter, the Hugging Face Hub's convention, so a folder says what it is when it
is shared. The body is made of marked sections; a later command replaces its own section (akd
eval its scores) and leaves the rest as it was.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.files import atomic_write

CARD_FILE = "README.md"
_SECTION = re.compile(r"<!-- akd:(?P<name>[a-z_-]+) -->\n(?P<body>.*?)<!-- /akd:(?P=name) -->\n", re.S)


def render(front: dict, title: str, sections: dict[str, str]) -> str:
    """The card's text: front matter, a title, then each section between its markers."""
    import yaml

    parts = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip("\n"), "---", "",
             f"# {title}", ""]
    for name, body in sections.items():
        parts += [f"<!-- akd:{name} -->", body.rstrip("\n"), f"<!-- /akd:{name} -->", ""]
    return "\n".join(parts)


def write_card(folder: Path | str, front: dict, title: str, sections: dict[str, str]) -> Path:
    path = Path(folder) / CARD_FILE
    atomic_write(path, render(front, title, sections))
    return path


def set_section(folder: Path | str, name: str, body: str) -> bool:
    """Replace (or append) section `name` of the folder's card; False where the folder has no akd card."""
    path = Path(folder) / CARD_FILE
    if not path.exists():
        return False
    text = path.read_text()
    if "<!-- akd:" not in text:
        return False  # someone else's card: left alone
    block = f"<!-- akd:{name} -->\n{body.rstrip(chr(10))}\n<!-- /akd:{name} -->\n"
    found = [m for m in _SECTION.finditer(text) if m.group("name") == name]
    if found:
        text = text[:found[0].start()] + block + text[found[0].end():]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write(path, text)
    return True


def sections(folder: Path | str) -> dict[str, str]:
    """The card's sections by name (their bodies, markers removed)."""
    path = Path(folder) / CARD_FILE
    return {m.group("name"): m.group("body") for m in _SECTION.finditer(path.read_text())} if path.exists() else {}
