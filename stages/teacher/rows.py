"""Dataset rows in, valid (row index, instruction, input) triples out; bad rows counted.

Row i of the dataset is always example "<tag>:<i>:<sample>", whatever the offset, limit or
worker split, so ids stay stable across runs and workers.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .config import TeacherCacheConfig, TeacherConfigError

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
log = logging.getLogger(__name__)
SKIP_MISSING = "missing_instruction"
SKIP_EMPTY = "empty_instruction"
SKIP_NOT_STRING = "non_string_instruction"
SKIP_BAD_INPUT = "non_string_input"
SKIP_TOO_LONG = "prompt_too_long"


@dataclass(frozen=True)
class SourceRow:
    row_index: int
    instruction: str
    input_text: str


def _local_format(path: Path) -> str | None:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".zst", ".bz2", ".xz")]
    return LOCAL_FORMATS.get(suffixes[-1]) if suffixes else None


def open_dataset(config: TeacherCacheConfig):
    """(datasets.Dataset, identity dict). A local file is loaded by the json/parquet builder."""
    import datasets

    path = Path(config.dataset)
    if path.exists():
        builder = _local_format(path)
        if builder is None:
            raise TeacherConfigError(f"--dataset {path}: unsupported file type; "
                                     f"use one of {', '.join(LOCAL_FORMATS)} (optionally .gz)")
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
        identity = {"source": path.name, "sha256": _file_sha256(path)}
        default_tag = path.name.split(".")[0]
    else:
        try:
            dataset = datasets.load_dataset(config.dataset, split=config.dataset_split,
                                            revision=config.dataset_revision)
        except Exception as err:  # datasets raises many types for a missing/unreachable id
            raise TeacherConfigError(f"--dataset {config.dataset!r} is neither a local file nor a "
                                     f"loadable Hub dataset ({type(err).__name__}: {err})") from None
        identity = {"source": config.dataset, "split": config.dataset_split,
                    "revision": config.dataset_revision, "fingerprint": dataset._fingerprint}
        default_tag = config.dataset.rstrip("/").split("/")[-1]
    fields = {"instruction": config.instruction_field, "input": config.input_field,
              "output": config.output_field}
    for role, name in fields.items():
        if name is not None and name not in dataset.column_names:
            raise TeacherConfigError(
                f"--{role}-field {name!r} is not a column of {config.dataset} "
                f"(columns: {', '.join(dataset.column_names)})")
    identity.update(tag=config.dataset_tag or default_tag, fields=fields)
    mixed = [name for name in fields.values()
             if name is not None and type(dataset.features[name]).__name__ == "Json"]
    if mixed:
        # datasets stores a column of mixed JSON types as Json(): there a string that is itself
        # valid JSON ("[1, 2]", "42") comes back as a list or number and its row is counted
        # as non-string. Say so rather than let it pass unnoticed.
        log.warning("%s: column(s) %s hold mixed types; string values that look like JSON "
                    "are decoded by `datasets` and their rows skipped as non-string",
                    config.dataset, ", ".join(mixed))
        identity["mixed_type_columns"] = mixed
    return dataset, identity


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def select_indices(num_rows: int, offset: int, limit: int | None, num_workers: int,
                   worker_index: int) -> range:
    """Rows offset..offset+limit of the dataset, then those with index % W == I."""
    stop = num_rows if limit is None else min(num_rows, offset + limit)
    first = offset + (worker_index - offset) % num_workers
    return range(first, stop, num_workers)


def check_row(row: dict, instruction_field: str, input_field: str | None) -> tuple[str, str] | str:
    """(instruction, input) of a usable row, else the skip reason."""
    instruction = row.get(instruction_field)
    if instruction is None:
        return SKIP_MISSING
    if not isinstance(instruction, str):
        return SKIP_NOT_STRING
    if not instruction.strip():
        return SKIP_EMPTY
    input_text = row.get(input_field) if input_field else None
    if input_text is None:
        input_text = ""
    if not isinstance(input_text, str):
        return SKIP_BAD_INPUT
    return instruction, input_text


def iter_source_rows(dataset, indices: range, config: TeacherCacheConfig, skipped: Counter):
    """Yield the valid rows of `indices`; count the others in `skipped` by reason."""
    columns = [c for c in (config.instruction_field, config.input_field) if c]
    view = dataset.select_columns(columns)
    for i in indices:
        checked = check_row(view[i], config.instruction_field, config.input_field)
        if isinstance(checked, str):
            skipped[checked] += 1
        else:
            yield SourceRow(i, *checked)
