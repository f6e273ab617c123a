"""Bad dataset files through `akd teacher-cache` (tiny model, HF backend): one error line that
names the file and the position, a resumed cache left whole, or with --skip-bad-lines a skip
counted in the manifest that keeps every other row's example id."""
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from click.testing import CliRunner  # noqa: E402

from cache_schema import CacheReader  # noqa: E402
from pipeline.cli import main  # noqa: E402
from stages.teacher.rows import open_dataset  # noqa: E402
from stages.teacher.settings import DatasetSettings  # noqa: E402

GOOD = ["Write a Python function that adds two numbers.", "Sort a list of numbers.",
        "Reverse a list in Python.", "Create a stack class.", "Print the first ten squares."]
CUT_OFF = '{"instruction": "Write a'  # a last line whose writer died mid-way


def row(text):
    return json.dumps({"instruction": text, "input": ""})


def run_cli(teacher, dataset, out, *extra):
    args = ["teacher-cache", "--teacher", str(teacher), "--dataset", str(dataset), "--out", str(out),
            "--backend", "hf", "--dtype", "float32", "--k", "4", "--max-new-tokens", "4",
            "--max-model-len", "512", "--output-field", "", "--rows-per-shard", "2", *extra]
    return CliRunner().invoke(main, args)


def error_line(result) -> str:
    """The run's only output line besides the allocator's, checked to be click's clean error
    (no traceback)."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a crash
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith("allocator: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cut_off_last_line_names_file_and_line(tiny_teacher, tmp_path):
    data = tmp_path / "instr.jsonl"
    data.write_text("\n".join([row(GOOD[0]), row(GOOD[1]), "", CUT_OFF]))
    line = error_line(run_cli(tiny_teacher, data, tmp_path / "c"))
    assert str(data) in line and "line 4:" in line and "not valid JSON" in line
    assert "--skip-bad-lines" in line
    assert not (tmp_path / "c").exists()


def test_error_leaves_a_resumed_cache_whole(tiny_teacher, tmp_path):
    data, out = tmp_path / "instr.jsonl", tmp_path / "c"
    data.write_text("\n".join(row(t) for t in GOOD[:3]) + "\n")
    assert run_cli(tiny_teacher, data, out).exit_code == 0
    before = snapshot(out)
    assert any(p.suffix == ".parquet" for p in before) and CacheReader(out).manifest.rows == 3
    with open(data, "a") as fh:
        fh.write(CUT_OFF)
    for extra in ((), ("--overwrite",)):  # even --overwrite must not get as far as the cache
        line = error_line(run_cli(tiny_teacher, data, out, *extra))
        assert str(data) in line and "line 4:" in line
        assert snapshot(out) == before


def test_skip_bad_lines_counts_them_and_keeps_row_ids(tiny_teacher, tmp_path):
    data, out = tmp_path / "instr.jsonl", tmp_path / "c"
    lines = [row(GOOD[0]), '{"instruction": "Sort a list", "input": }', "", row(GOOD[1]), "[1, 2]",
             row(GOOD[2]), json.dumps({"instruction": 7}), row(GOOD[3]), CUT_OFF, "", ""]
    data.write_text("\n".join(lines))
    result = run_cli(tiny_teacher, data, out, "--skip-bad-lines")
    assert result.exit_code == 0, result.output
    manifest = CacheReader(out).manifest
    assert manifest.skipped == {"invalid_json": 2, "non_object_row": 1, "non_string_instruction": 1}
    assert manifest.stats["teacher_stage"]["skip_bad_lines"] is True
    # Rows are the non-blank lines, as `datasets` counts them; a skipped line keeps its index.
    ids = sorted(r.example_id for r in CacheReader(out).iter_examples())
    assert ids == sorted(f"instr:{i}:0" for i in (0, 2, 4, 6))
    records = {r.example_id: r for r in CacheReader(out).iter_examples()}
    # Fixing the bad lines later shifts no row: the same index holds the same instruction.
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("\n".join([row(GOOD[0]), row("x"), "", row(GOOD[1]), row("y"), row(GOOD[2]),
                                row("z"), row(GOOD[3]), row(GOOD[4])]) + "\n")
    dataset, _, bad = open_dataset(DatasetSettings(dataset=str(fixed)))
    assert bad == {} and [dataset[i]["instruction"] for i in (0, 2, 4, 6)] == GOOD[:4]
    assert len(records) == 4


def test_json_array_that_does_not_parse_names_line_and_column(tiny_teacher, tmp_path):
    data = tmp_path / "rows.json"
    data.write_text("[\n  " + row(GOOD[0]) + ",\n  " + row(GOOD[1]) + "\n  " + row(GOOD[2]) + "\n]\n")
    line = error_line(run_cli(tiny_teacher, data, tmp_path / "c", "--skip-bad-lines"))
    assert str(data) in line and "line 4 column 3" in line and "delimiter" in line


def test_parquet_that_is_not_parquet_names_file_and_reason(tiny_teacher, tmp_path):
    data = tmp_path / "rows.parquet"
    data.write_text(row(GOOD[0]) + "\n")
    line = error_line(run_cli(tiny_teacher, data, tmp_path / "c"))
    assert str(data) in line and "not a readable Parquet file" in line and "magic bytes" in line


def test_hub_id_offline_says_so(tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    line = error_line(run_cli(tiny_teacher, "nobody-akd/no-such-data", tmp_path / "c"))
    assert "'nobody-akd/no-such-data'" in line and "Hub is offline" in line
    line = error_line(run_cli(tiny_teacher, tmp_path / "missing.jsonl", tmp_path / "c"))
    assert f"{tmp_path / 'missing.jsonl'}: no such file" in line


@pytest.mark.parametrize("text", [
    "\n".join(row(t) for t in GOOD) + "\n",  # a .json file holding JSON Lines
    "[" + ",\n".join(row(t) for t in GOOD) + "]",  # a JSON array
    "\ufeff  \n[" + ", ".join(row(t) for t in GOOD) + "]\n",  # BOM and blank line before it
])
def test_json_file_as_lines_or_array(text, tmp_path):
    data = tmp_path / "rows.json"
    data.write_text(text, encoding="utf-8")
    dataset, identity, bad = open_dataset(DatasetSettings(dataset=str(data)))
    assert bad == {} and dataset["instruction"] == GOOD and identity["tag"] == "rows"


def test_blank_lines_beside_a_mixed_type_column_load(tmp_path):
    """`datasets` itself fails on this file (a trailing blank line and a column of strings and
    numbers); the normalized copy loads it with the same row numbering."""
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join([row(GOOD[0]), json.dumps({"instruction": 42}), row(GOOD[1])]) + "\n\n")
    dataset, identity, bad = open_dataset(DatasetSettings(dataset=str(data)))
    assert bad == {} and dataset["instruction"] == [GOOD[0], 42, GOOD[1]]
    assert identity["mixed_type_columns"] == ["instruction"]
