"""Dataset rows in, valid (row index, instruction, input) triples out; bad rows counted.

Row i of the dataset is always example "<tag>:<i>:<sample>", whatever the offset, limit or
worker split, so ids stay stable across runs and workers. A bad line skipped with
--skip-bad-lines keeps its row index (source_files.py), so fixing it later shifts no id.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.errors import error_chain, first_line
from common.files import file_sha256

from .settings import DatasetSettings, TeacherConfigError
from .source_files import COMPRESSED_SUFFIXES, load_local_file

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
    suffixes = [s for s in path.suffixes if s not in COMPRESSED_SUFFIXES]
    return LOCAL_FORMATS.get(suffixes[-1]) if suffixes else None


def open_dataset(config: DatasetSettings, output_field: str | None = None,
                 skip_bad_lines: bool = False):
    """(datasets.Dataset, identity dict, {row index: skip reason} of rows that are bad lines).

    A local file is checked line by line, then loaded by the json/parquet builder.
    `output_field`: a reference-answer column checked to exist (stage one's --output-field)."""
    path = Path(config.dataset)
    bad_rows: dict[int, str] = {}
    if path.exists():
        builder = _local_format(path)
        if builder is None:
            raise TeacherConfigError(f"--dataset {path}: unsupported file type; "
                                     f"use one of {', '.join(LOCAL_FORMATS)} (optionally .gz)")
        dataset, bad_rows = load_local_file(path, builder, skip_bad_lines)
        identity = {"source": path.name, "sha256": "sha256:" + file_sha256(path)}
        default_tag = path.name.split(".")[0]
    else:
        dataset = _load_hub_dataset(config)
        identity = {"source": config.dataset, "split": config.dataset_split,
                    "revision": config.dataset_revision, "fingerprint": dataset._fingerprint}
        default_tag = config.dataset.rstrip("/").split("/")[-1]
    fields = {"instruction": config.instruction_field, "input": config.input_field,
              "output": output_field}
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
    return dataset, identity, bad_rows


def _load_hub_dataset(config: DatasetSettings):
    """A Hub dataset (or its copy in the local datasets cache); failures are one line."""
    import datasets

    name = config.dataset
    if _local_format(Path(name)) is not None or name.startswith((".", "/", "~")):
        raise TeacherConfigError(f"--dataset {name}: no such file")
    try:
        return datasets.load_dataset(name, split=config.dataset_split,
                                     revision=config.dataset_revision)
    except Exception as err:  # datasets raises many types for a missing/unreachable id
        if _hub_offline(err):
            raise TeacherConfigError(
                f"--dataset {name!r}: no such local file, and the Hub is offline (HF_HUB_OFFLINE=1) "
                "with no copy of it in the local datasets cache; give a local file, or run once "
                "with HF_HUB_OFFLINE=0 to download it") from None
        if _hub_unreachable(err):
            raise TeacherConfigError(f"--dataset {name!r}: no such local file, and the Hub cannot "
                                     f"be reached ({first_line(err)})") from None
        raise TeacherConfigError(f"--dataset {name!r} is neither a local file nor a loadable Hub "
                                 f"dataset ({type(err).__name__}: {first_line(err)})") from None


def _hub_offline(err: BaseException) -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or any(
        type(e).__name__ == "OfflineModeIsEnabled" or "OfflineModeIsEnabled" in str(e)
        for e in error_chain(err))


def _hub_unreachable(err: BaseException) -> bool:
    return any(isinstance(e, (ConnectionError, TimeoutError)) or
               type(e).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout")
               for e in error_chain(err))


def select_indices(num_rows: int, offset: int, limit: int | None, num_workers: int,
                   worker_index: int, source: str = "the dataset") -> range:
    """Rows offset..offset+limit of the dataset, then those with index % W == I.

    A selection of no rows at all is refused (it would seal an empty cache and exit 0)."""
    stop = num_rows if limit is None else min(num_rows, offset + limit)
    if stop <= offset:
        raise TeacherConfigError(f"--offset {offset}{'' if limit is None else f' --limit {limit}'} selects "
                                 f"no rows of --dataset {source}, which has {num_rows}: nothing to do")
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


def iter_source_rows(dataset, indices: range, config: DatasetSettings, skipped: Counter,
                     bad_rows: dict[int, str] | None = None):
    """Yield the valid rows of `indices`; count the others in `skipped` by reason (a bad line's
    reason from `bad_rows`, as open_dataset found it)."""
    columns = [c for c in (config.instruction_field, config.input_field) if c]
    view = dataset.select_columns(columns)
    bad_rows = bad_rows or {}
    for i in indices:
        if i in bad_rows:
            skipped[bad_rows[i]] += 1
            continue
        checked = check_row(view[i], config.instruction_field, config.input_field)
        if isinstance(checked, str):
            skipped[checked] += 1
        else:
            yield SourceRow(i, *checked)
