"""Prompt templates: the built-in file, user files and their validation."""
import json

import pytest

from inference.templates import TemplateError, get_template, load_templates, load_templates_file


def test_builtin_templates_render_instruction_and_optional_input():
    templates = load_templates()
    assert {"plain", "enhanced"} <= set(templates)
    plain, enhanced = templates["plain"], templates["enhanced"]
    assert plain.messages("Reverse a string.") == [{"role": "user", "content": "Reverse a string."}]
    assert plain.messages("Sum it.", "[1, 2]") == [
        {"role": "user", "content": "Sum it.\n\nInput:\n[1, 2]"}]
    system, user = enhanced.messages("Sum it.", "  ")
    assert system["role"] == "system" and "Python" in system["content"]
    assert "code block" in system["content"] and user["content"] == "Sum it."


def test_instruction_braces_are_not_template_fields():
    assert get_template("plain").messages("Use {x} and {}")[0]["content"] == "Use {x} and {}"


def test_render_applies_chat_template(tiny_teacher):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    ids = get_template("plain").render(tok, "def add(a, b):")
    assert tok.decode(ids) == "<|im_start|>user\ndef add(a, b):<|im_end|>\n<|im_start|>assistant\n"


def _write(tmp_path, entries):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"templates": entries}))
    return path


def test_user_file_adds_and_overrides(tmp_path):
    path = _write(tmp_path, [{"name": "plain", "system": "S", "user": "Q: {instruction}"},
                             {"name": "mine", "system": None, "user": "{instruction}{input_block}",
                              "input_format": "\n# input: {input}", "description": "d"}])
    templates = load_templates(path)
    assert templates["plain"].messages("x")[0] == {"role": "system", "content": "S"}
    assert templates["mine"].messages("x", "y")[0]["content"] == "x\n# input: y"
    assert "enhanced" in templates
    with pytest.raises(TemplateError, match="unknown prompt template 'nope'; available: .*enhanced"):
        get_template("nope", path)


@pytest.mark.parametrize("entry, message", [
    ({"system": None, "user": "{instruction}"}, "'name' must be a non-empty string"),
    ({"name": "a", "user": "no placeholder"}, "must contain the {instruction} placeholder"),
    ({"name": "a", "user": "{instruction} {answer}"}, "unknown placeholders \\['answer'\\]"),
    ({"name": "a", "user": "{instruction} {"}, "write a literal brace"),
    ({"name": "a", "user": "{instruction}", "system": 3}, "'system' must be a string or null"),
    ({"name": "a", "user": "{instruction}", "system": "{instruction}"}, "takes no placeholders"),
    ({"name": "a", "user": "{instruction}", "colour": "red"}, "unknown keys \\['colour'\\]"),
    ({"name": "a", "user": "{instruction}{input_block}", "input_format": "x"}, "exactly the {input}"),
    ({"name": "a", "user": "{instruction}", "input_format": "{input}"}, "has no {input_block}"),
    ("plain", "must be an object"),
])
def test_invalid_templates_are_refused_with_the_entry_named(tmp_path, entry, message):
    path = _write(tmp_path, [entry])
    with pytest.raises(TemplateError, match=message) as err:
        load_templates_file(path)
    assert f"{path}, entry 0" in str(err.value)


def test_invalid_files_are_refused(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        load_templates_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TemplateError, match="invalid JSON"):
        load_templates_file(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"templates": []}')
    with pytest.raises(TemplateError, match="at least one template"):
        load_templates_file(tmp_path / "empty.json")
    path = _write(tmp_path, [{"name": "a", "user": "{instruction}"}] * 2)
    with pytest.raises(TemplateError, match="'a' is defined twice"):
        load_templates_file(path)
