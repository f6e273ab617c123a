"""Prompt templates are data (inference/prompts.json); this module loads and applies them.

A template turns a dataset row (instruction, optional input) into chat messages:
{name, description, system: str | null, user: str with {instruction} and {input_block},
 input_format: optional str with {input}, used to build {input_block} when the row has input}.
Users add their own with a --templates-file of the same shape; a name defined there wins.
"""
from __future__ import annotations

import json
from importlib import resources
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from .chat import render_prompt

# Package data, so a non-editable install finds it (a plain Path for an unzipped install).
BUILTIN_TEMPLATES = Path(str(resources.files("inference") / "prompts.json"))
DEFAULT_INPUT_FORMAT = "\n\nInput:\n{input}"
_USER_FIELDS = {"instruction", "input_block"}
_KEYS = {"name", "description", "system", "user", "input_format"}


class TemplateError(ValueError):
    """A templates file or a template name that cannot be used."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    user: str
    system: str | None = None
    description: str = ""
    input_format: str = DEFAULT_INPUT_FORMAT

    def messages(self, instruction: str, input_text: str = "") -> list[dict[str, str]]:
        block = self.input_format.format(input=input_text) if input_text.strip() else ""
        user = self.user.format(instruction=instruction, input_block=block)
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [{"role": "user", "content": user}]

    def render(self, tokenizer, instruction: str, input_text: str = "") -> list[int]:
        return render_prompt(tokenizer, self.messages(instruction, input_text))

    def to_dict(self) -> dict:
        """The full text, as recorded in the cache manifest."""
        return asdict(self)


def _fields(text: str, where: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as err:
        raise TemplateError(f"{where}: {err} (write a literal brace as {{{{ or }}}})") from None


def _parse_template(entry, where: str) -> PromptTemplate:
    if not isinstance(entry, dict):
        raise TemplateError(f"{where}: a template must be an object, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TemplateError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    unknown = set(entry) - _KEYS
    if unknown:
        raise TemplateError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    user, system = entry.get("user"), entry.get("system")
    if not isinstance(user, str) or not user.strip():
        raise TemplateError(f"{where}: 'user' must be a non-empty string")
    if system is not None and not isinstance(system, str):
        raise TemplateError(f"{where}: 'system' must be a string or null")
    fields = _fields(user, f"{where} user")
    if "instruction" not in fields:
        raise TemplateError(f"{where}: 'user' must contain the {{instruction}} placeholder")
    if fields - _USER_FIELDS:
        raise TemplateError(f"{where}: 'user' has unknown placeholders {sorted(fields - _USER_FIELDS)}; "
                            f"allowed: {{instruction}}, {{input_block}}")
    if system is not None and _fields(system, f"{where} system"):
        raise TemplateError(f"{where}: 'system' takes no placeholders (escape braces as {{{{ }}}})")
    input_format = entry.get("input_format", DEFAULT_INPUT_FORMAT)
    if not isinstance(input_format, str) or _fields(input_format, f"{where} input_format") != {"input"}:
        raise TemplateError(f"{where}: 'input_format' must be a string with exactly the {{input}} placeholder")
    if "input_block" not in fields and "input_format" in entry:
        raise TemplateError(f"{where}: 'input_format' is set but 'user' has no {{input_block}}")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise TemplateError(f"{where}: 'description' must be a string")
    return PromptTemplate(name=name, user=user, system=system or None, description=description,
                          input_format=input_format)


def load_templates_file(path) -> dict[str, PromptTemplate]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"templates file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise TemplateError(f"templates file {path}: invalid JSON: {err}") from None
    entries = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise TemplateError(f"templates file {path}: expected {{\"templates\": [ ... ]}} with at least one template")
    templates: dict[str, PromptTemplate] = {}
    for i, entry in enumerate(entries):
        template = _parse_template(entry, f"templates file {path}, entry {i}")
        if template.name in templates:
            raise TemplateError(f"templates file {path}: template {template.name!r} is defined twice")
        templates[template.name] = template
    return templates


def load_templates(extra_file=None) -> dict[str, PromptTemplate]:
    """The built-in templates, plus (overriding by name) those of `extra_file`."""
    templates = load_templates_file(BUILTIN_TEMPLATES)
    if extra_file is not None:
        templates.update(load_templates_file(extra_file))
    return templates


def get_template(name: str, extra_file=None) -> PromptTemplate:
    templates = load_templates(extra_file)
    if name not in templates:
        raise TemplateError(f"unknown prompt template {name!r}; available: {', '.join(sorted(templates))}")
    return templates[name]
