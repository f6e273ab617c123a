"""Local .json/.jsonl/.parquet files checked before `datasets` reads them.

`datasets` reports a cut-off or malformed line as a traceback that names neither the file nor
the line. Here every JSON line (or the whole JSON document) is parsed with the json module
first, so bad input becomes one line naming the file and the position, or, with
skip_bad_lines, a skip counted by reason. A file that checks out is loaded by `datasets`
exactly as before (its sha256 stays the dataset's identity either way).

Row numbering is the one `datasets` uses: row i is the i-th non-blank line of a JSON Lines
file, or the i-th element of a JSON array. A skipped row keeps its index (it becomes an empty
placeholder row that is never used), so the example ids of the other rows do not shift when
the bad line is fixed later.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import first_line

from .config import TeacherConfigError

SKIP_INVALID_JSON = "invalid_json"
SKIP_NOT_OBJECT = "non_object_row"
_BOM = b"\xef\xbb\xbf"
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")  # what fsspec decompresses by suffix
_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}
_NAMED_IN_WARNING = 5
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadRow:
    row_index: int
    where: str  # "line 7" (JSON Lines) or "element 3" (JSON array)
    reason: str  # SKIP_INVALID_JSON or SKIP_NOT_OBJECT
    detail: str


@dataclass
class JsonScan:
    rows: int = 0
    bad: list[BadRow] = field(default_factory=list)
    # `datasets` would stumble on the layout: blank lines (it drops them, but fails on them
    # beside a mixed-type column) or anything before an array's "[" (after a BOM)
    needs_copy: bool = False


def _open(path: Path):
    """The file's bytes, decompressed by suffix (.gz, .bz2, .xz, .zst) as `datasets` does."""
    import fsspec

    return fsspec.open(str(path), "rb", compression="infer")


def _problem(value) -> tuple[str, str] | None:
    if isinstance(value, dict):
        return None
    return SKIP_NOT_OBJECT, f"a JSON {_JSON_TYPES.get(type(value), 'value')}, not an object"


def _check_line(raw: bytes) -> tuple[str, str] | None:
    """(reason, detail) for a JSON Lines line that is not one JSON object, else None."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return SKIP_INVALID_JSON, f"not UTF-8 text (byte {err.start + 1})"
    except json.JSONDecodeError as err:
        return SKIP_INVALID_JSON, f"not valid JSON ({err.msg}: column {err.colno})"
    return _problem(value)


def _read_document(path: Path):
    """The whole file as one JSON value; a parse error names its line and column."""
    with _open(path) as fh:
        data = fh.read().removeprefix(_BOM)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise TeacherConfigError(f"--dataset {path}: not UTF-8 text (byte {err.start + 1})") from None
    except json.JSONDecodeError as err:
        raise TeacherConfigError(f"--dataset {path}: not valid JSON ({err.msg}: line {err.lineno} "
                                 f"column {err.colno})") from None


def _array_bad_rows(rows: list) -> list[BadRow]:
    if all(isinstance(row, str) for row in rows):
        return []  # `datasets` reads a list of strings as one "text" column
    return [BadRow(i, f"element {i}", *problem) for i, row in enumerate(rows)
            if (problem := _problem(row)) is not None]


def _lines(path: Path):
    """(line number, bytes) of each line of the file (BOM removed)."""
    with _open(path) as fh:
        for number, raw in enumerate(fh, 1):
            yield number, raw.removeprefix(_BOM) if number == 1 else raw


def _non_blank_lines(path: Path):
    return ((number, raw) for number, raw in _lines(path) if raw.strip())


def scan_json_file(path: Path) -> JsonScan:
    """Every row of a .json/.jsonl file parsed: a JSON array, one JSON document, or JSON Lines.

    A file that is one JSON value but does not parse raises with json's line and column (its
    rows cannot be told apart, so none can be skipped); JSON Lines report bad lines as BadRows.
    """
    scan, any_parsed = JsonScan(), False
    for number, raw in _lines(path):
        if not raw.strip():
            scan.needs_copy = True
            continue
        if scan.rows == 0 and raw.lstrip().startswith(b"["):
            rows = _read_document(path)
            return JsonScan(rows=len(rows), bad=_array_bad_rows(rows),
                            needs_copy=number > 1 or not raw.startswith(b"["))
        problem = _check_line(raw)
        any_parsed |= problem is None or problem[0] == SKIP_NOT_OBJECT
        if problem is not None:
            scan.bad.append(BadRow(scan.rows, f"line {number}", *problem))
        scan.rows += 1
    if scan.bad:
        # One pretty-printed JSON document (not an array) is no JSON Lines file, but
        # `datasets` reads it as a table of columns. If no line parses on its own, the file can
        # only be such a document: then json's line and column of its error are the news.
        try:
            _read_document(path)
        except TeacherConfigError:
            if not any_parsed:
                raise
        else:
            return JsonScan(rows=1)
    return scan


def bad_rows_error(path: Path, scan: JsonScan) -> TeacherConfigError:
    first = scan.bad[0]
    more = f"; {len(scan.bad)} bad rows of {scan.rows}" if len(scan.bad) > 1 else ""
    return TeacherConfigError(f"--dataset {path}: {first.where}: {first.detail}{more}; fix the file, "
                              "or pass --skip-bad-lines to skip such rows (counted in the manifest)")


def _normalized_lines(path: Path, bad: set[int]):
    """One JSON object per row, in row order: `{}` in place of each bad row, no blank lines."""
    first = next(_non_blank_lines(path), (0, b""))[1]
    if first.lstrip().startswith(b"["):
        for i, row in enumerate(_read_document(path)):
            yield b"{}" if i in bad else json.dumps(row if isinstance(row, dict) else {"text": row}).encode()
        return
    for i, (_, raw) in enumerate(_non_blank_lines(path)):
        yield b"{}" if i in bad else raw.strip()


def _load_normalized(path: Path, bad: set[int]):
    """Load a normalized copy of `path` (kept in memory; the copy and its cache are removed)."""
    import datasets

    with tempfile.TemporaryDirectory(prefix="akd-rows-") as tmp:
        copy = Path(tmp) / "rows.jsonl"
        with open(copy, "wb") as out:
            for line in _normalized_lines(path, bad):
                out.write(line + b"\n")
        return datasets.load_dataset("json", data_files=str(copy), split="train",
                                     cache_dir=str(Path(tmp) / "cache"), keep_in_memory=True)


def check_parquet_file(path: Path) -> None:
    """Raise one line (pyarrow's reason) unless `path` opens as a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(str(path))  # `datasets` reads Parquet as is: a .parquet.gz is not Parquet
    except (pa.ArrowException, OSError) as err:
        raise TeacherConfigError(f"--dataset {path}: not a readable Parquet file "
                                 f"(pyarrow: {first_line(err)})") from None


def _scan_readable(path: Path) -> JsonScan:
    """scan_json_file, with a damaged compressed file and a file of no rows refused in one line."""
    try:
        scan = scan_json_file(path)
    except TeacherConfigError:
        raise
    except Exception as err:  # gzip/bz2/lzma/zstd each raise their own type (EOFError when cut short)
        if not set(COMPRESSED_SUFFIXES).intersection(path.suffixes):
            raise
        raise TeacherConfigError(f"--dataset {path}: cannot decompress it, the file is cut short or damaged "
                                 f"({type(err).__name__}: {first_line(err)})") from None
    if scan.rows == 0:
        raise TeacherConfigError(f"--dataset {path}: the file has no rows")
    return scan


def load_local_file(path: Path, builder: str, skip_bad_lines: bool):
    """(datasets.Dataset, {row index: skip reason}) of a local file; bad input raises one line
    naming the file and position, or with skip_bad_lines its rows are left empty and listed."""
    import datasets

    bad_rows: dict[int, str] = {}
    normalize = False
    if builder == "parquet":
        check_parquet_file(path)
    else:
        scan = _scan_readable(path)
        if scan.bad and not skip_bad_lines:
            raise bad_rows_error(path, scan)
        if scan.bad and len(scan.bad) == scan.rows:
            raise TeacherConfigError(f"--dataset {path}: none of its {scan.rows} rows is a JSON object "
                                     f"({scan.bad[0].where}: {scan.bad[0].detail})")
        if scan.bad:
            named = ", ".join(f"{b.where} ({b.reason})" for b in scan.bad[:_NAMED_IN_WARNING])
            log.warning("%s: skipping %d bad row(s) of %d: %s%s", path, len(scan.bad), scan.rows,
                        named, ", ..." if len(scan.bad) > _NAMED_IN_WARNING else "")
        bad_rows = {b.row_index: b.reason for b in scan.bad}
        normalize = bool(scan.bad) or scan.needs_copy
    try:
        if normalize:
            dataset = _load_normalized(path, set(bad_rows))
        else:
            dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:  # what the checks above cannot foresee, still one line
        cause = err.__cause__ or err
        raise TeacherConfigError(f"--dataset {path}: `datasets` cannot read it "
                                 f"({type(cause).__name__}: {first_line(cause)})") from None
    return dataset, bad_rows
