"""Calibration sequences for width pruning: training rows, prompt and answer, as the model sees them.

Importance must be measured on data the student is trained on, never on a benchmark. The
default is the end of the CodeAlpaca-2k file akd ships (data/code_alpaca_2k.json): the
default caches take its first rows, so its last 40 rows are training-style prompts that no
cache example repeats. Each row becomes one sequence: the instruction (and input) as the
user turn under the `plain` prompt template, the reference output as the assistant turn,
rendered with the model's chat template, so the activations cover prompt and answer tokens.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from model_tools.prune import PruneError
from common.files import file_sha256

DEFAULT_CALIBRATION = "code_alpaca_2k.json"  # in the data package akd ships (akd_data)
FIELDS = ("instruction", "input", "output")


@dataclass(frozen=True)
class CalibrationSet:
    """The token-id sequences, and where they came from (recorded in the provenance)."""

    sequences: list[list[int]]
    file: str
    sha256: str
    first_row: int
    n_rows: int
    file_rows: int
    truncated: int  # sequences cut at max_tokens

    def provenance(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "rows": [self.first_row, self.first_row + self.n_rows],
                "n_rows": self.n_rows, "file_rows": self.file_rows, "template": "plain",
                "tokens": sum(len(s) for s in self.sequences), "truncated": self.truncated}


def default_calibration_file() -> Path:
    return Path(str(resources.files("akd_data"))) / DEFAULT_CALIBRATION


def read_rows(path: Path) -> list:
    """The rows of a .json file (a list) or a .jsonl file (one object a line)."""
    if not path.is_file():
        raise PruneError(f"--calibration: {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise PruneError(f"--calibration: {path} line {number} is not JSON: {err}") from None
        return rows
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise PruneError(f"--calibration: {path} is not JSON: {err}") from None
    if not isinstance(rows, list):
        raise PruneError(f"--calibration: {path} must hold a JSON list of rows (or be a .jsonl file)")
    return rows


def select_rows(n_file_rows: int, n_rows: int, offset: int | None, path: Path) -> int:
    """The first row used: `offset`, or by default the start of the file's last `n_rows` rows."""
    if n_rows < 1:
        raise PruneError(f"--calibration-rows must be at least 1, got {n_rows}")
    first = n_file_rows - n_rows if offset is None else offset
    if first < 0 or first + n_rows > n_file_rows:
        raise PruneError(f"--calibration-rows {n_rows} from row {first} runs past the {n_file_rows} rows "
                         f"of {path}")
    return first


def row_messages(row, where: str) -> list[dict[str, str]]:
    """The chat of one row: user turn (plain template), then the reference answer."""
    from inference import get_template

    if not isinstance(row, dict):
        raise PruneError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    for name in ("instruction", "output"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise PruneError(f"{where}: needs a non-empty string {name!r} (fields: {', '.join(FIELDS)})")
    input_text = row.get("input") or ""
    if not isinstance(input_text, str):
        raise PruneError(f"{where}: 'input' must be a string")
    user = get_template("plain").messages(row["instruction"], input_text)
    return user + [{"role": "assistant", "content": row["output"]}]


def render_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a whole chat (no generation prompt); contents joined without a template."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
        return [int(i) for i in ids]
    text = "\n\n".join(m["content"] for m in messages)
    return [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]


def load_calibration(tokenizer, file: str | Path | None, n_rows: int, offset: int | None,
                     max_tokens: int) -> CalibrationSet:
    """The calibration sequences of `n_rows` rows of `file` (default: the last 40 CodeAlpaca rows)."""
    if max_tokens < 2:
        raise PruneError(f"--calibration-max-tokens must be at least 2, got {max_tokens}")
    path = default_calibration_file() if file is None else Path(file)
    rows = read_rows(path)
    first = select_rows(len(rows), n_rows, offset, path)
    sequences, truncated = [], 0
    for index in range(first, first + n_rows):
        ids = render_chat(tokenizer, row_messages(rows[index], f"--calibration: {path} row {index}"))
        truncated += len(ids) > max_tokens
        sequences.append(ids[:max_tokens])
    return CalibrationSet(sequences=sequences, file=str(path.resolve()),
                          sha256=file_sha256(path), first_row=first,
                          n_rows=n_rows, file_rows=len(rows), truncated=truncated)
