"""Stage one on the tiny model with the HF backend (fast): rows, skips, ids, resume, workers,
alignment of the cached top-k with the teacher's own forward pass."""
import os
from collections import Counter

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cache_schema import CacheMismatchError, CacheReader, verify_cache  # noqa: E402
from cache_schema.encoding import get_encoding  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from pipeline.cli import main  # noqa: E402
from stages.teacher import TeacherCacheConfig, TeacherConfigError, build_teacher_cache  # noqa: E402
from stages.teacher.rows import check_row, open_dataset, select_indices  # noqa: E402
from stages.teacher.settings import DatasetSettings  # noqa: E402
from stages.teacher.summary import python_block_parses  # noqa: E402
from distill_cache import FINE_GRID_ENCODING  # noqa: E402
from teacher_data import GOOD, SKIPPED, check_alignment, write_rows  # noqa: E402

MAX_NEW = 8


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "instr.jsonl"
    return path, write_rows(path)


def make_config(tiny_teacher, data_file, out_dir, **overrides):
    options = dict(model=str(tiny_teacher), dataset=str(data_file[0]), out_dir=out_dir,
                   backend="hf", k=4, max_new_tokens=MAX_NEW, max_model_len=512,
                   rows_per_shard=3, chunk_size=4, progress=False, dtype="float32")
    options.update(overrides)
    return TeacherCacheConfig.from_options(options)


def ids_in(cache_dir):
    return Counter(r.example_id for r in CacheReader(cache_dir).iter_examples())


@pytest.fixture(scope="module")
def built(tiny_teacher, data_file, tmp_path_factory):
    config = make_config(tiny_teacher, data_file, tmp_path_factory.mktemp("cache") / "c")
    return config, build_teacher_cache(config)


def test_select_indices_splits_disjoint_and_covering():
    for offset, limit, workers in [(0, None, 3), (5, 17, 4), (2, 1, 2), (29, 100, 3), (7, 100, 1)]:
        parts = [list(select_indices(30, offset, limit, workers, w)) for w in range(workers)]
        flat = sorted(i for p in parts for i in p)
        stop = 30 if limit is None else min(30, offset + limit)
        assert flat == list(range(offset, stop))
        assert all(i % workers == w for w, p in enumerate(parts) for i in p)


@pytest.mark.parametrize("offset, limit", [(30, None), (31, 5), (5, 0)])
def test_a_selection_of_no_rows_is_refused_naming_the_dataset(offset, limit):
    """It used to yield an empty range: an empty cache sealed, exit 0."""
    with pytest.raises(TeacherConfigError, match=r"--offset .* selects no rows of --dataset d.json, which has 30"):
        select_indices(30, offset, limit, 1, 0, source="d.json")


def test_check_row_reasons():
    assert check_row({"q": "Do it", "x": None}, "q", "x") == ("Do it", "")
    assert check_row({"q": "Do it", "x": "1"}, "q", None) == ("Do it", "")
    assert check_row({"x": "1"}, "q", "x") == "missing_instruction"
    assert check_row({"q": ""}, "q", "x") == "empty_instruction"
    assert check_row({"q": {"a": 1}}, "q", "x") == "non_string_instruction"
    assert check_row({"q": "Do it", "x": 3}, "q", "x") == "non_string_input"


def test_field_mapping_and_formats(tmp_path):
    path = tmp_path / "renamed.jsonl"
    good = write_rows(path, field="prompt")
    config = DatasetSettings(dataset=str(path), instruction_field="prompt")
    dataset, identity, bad_rows = open_dataset(config)
    assert bad_rows == {}
    assert identity["tag"] == "renamed" and identity["fields"]["instruction"] == "prompt"
    assert identity["sha256"].startswith("sha256:")
    assert dataset[good[2]]["prompt"] == GOOD[2]
    config.instruction_field = "instruction"
    with pytest.raises(TeacherConfigError, match="--instruction-field 'instruction' is not a column"):
        open_dataset(config)
    parquet = tmp_path / "rows.parquet"
    dataset.to_parquet(str(parquet))
    config = DatasetSettings(dataset=str(parquet), instruction_field="prompt", dataset_tag="pq")
    assert open_dataset(config)[1]["tag"] == "pq"
    (tmp_path / "rows.csv").write_text("a\n")
    config.dataset = str(tmp_path / "rows.csv")
    with pytest.raises(TeacherConfigError, match="unsupported file type"):
        open_dataset(config)


@pytest.mark.parametrize("overrides, message", [
    ({"backend": "onnx"}, "--backend"), ({"k": 0}, "--k"), ({"n": 2}, "--n: greedy"),
    ({"worker_index": 2, "num_workers": 2}, "--worker-index"),
    ({"max_model_len": 8}, "--max-model-len"), ({"dataset_tag": "a:b"}, "--dataset-tag"),
])
def test_config_errors_name_the_option(overrides, message, tmp_path):
    config = TeacherCacheConfig.from_options({"model": "m", "dataset": "d", "out_dir": tmp_path,
                                              **overrides})
    with pytest.raises(TeacherConfigError, match=message):
        config.validate()


def test_build_counts_skips_and_writes_every_good_row(built, data_file):
    config, summary = built
    good = data_file[1]
    assert summary["skipped"] == SKIPPED
    assert summary["examples_written"] == summary["examples_in_cache"] == len(GOOD)
    assert summary["rows_selected"] == len(GOOD) + sum(SKIPPED.values())
    assert summary["finish_reasons"] == {"length": len(GOOD)}  # random model: never stops early
    assert summary["response_tokens_written"] == len(GOOD) * MAX_NEW
    assert 0 < summary["mean_topk_mass"] < 1 and summary["bytes_per_token"] > 0
    report = verify_cache(config.out_dir)
    assert report.rows == len(GOOD)
    assert ids_in(config.out_dir) == Counter(f"instr:{i}:0" for i in good)
    manifest = CacheReader(config.out_dir).manifest
    assert manifest.skipped == SKIPPED and manifest.k == 4
    assert manifest.identity["templates"]["teacher"]["name"] == "enhanced"
    assert manifest.identity["templates"]["student"]["system"] is None


def test_cache_stores_student_prompt_and_aligned_teacher_topk(built, tiny_teacher, data_file):
    config, _ = built
    assert check_alignment(config.out_dir, tiny_teacher, data_file[1]) == len(GOOD)


def test_rerun_resumes_without_duplicates_and_refuses_other_settings(built, tiny_teacher, data_file):
    config, first = built
    again = build_teacher_cache(make_config(tiny_teacher, data_file, config.out_dir))
    assert again["examples_written"] == 0 and again["examples_already_cached"] == len(GOOD)
    assert again["skipped"] == SKIPPED and sum(ids_in(config.out_dir).values()) == len(GOOD)
    with pytest.raises(CacheMismatchError, match="templates"):
        build_teacher_cache(make_config(tiny_teacher, data_file, config.out_dir,
                                        teacher_template="plain"))


def test_workers_fill_one_cache_disjointly(tiny_teacher, data_file, tmp_path):
    out = tmp_path / "c"
    summaries = [build_teacher_cache(make_config(tiny_teacher, data_file, out, num_workers=3,
                                                 worker_index=w, offset=1, limit=20))
                 for w in (2, 0, 1)]
    result = CliRunner().invoke(main, ["cache", "finalize", str(out)])  # what a user runs
    assert result.exit_code == 0, result.output
    manifest = CacheReader(out).manifest
    selected = [i for i in data_file[1] if 1 <= i < 21]
    assert ids_in(out) == Counter(f"instr:{i}:0" for i in selected)
    assert manifest.rows == len(selected) == sum(s["examples_written"] for s in summaries)
    assert f"finalized {len(manifest.shards)} shards, {len(selected)} examples" in result.output
    assert sum(s["rows_selected"] for s in summaries) == 20
    assert sum(manifest.skipped.values()) == 20 - len(selected)
    verify_cache(out)


def test_sampling_gives_n_examples_per_row_with_stable_ids(tiny_teacher, data_file, tmp_path):
    config = make_config(tiny_teacher, data_file, tmp_path / "c", temperature=1.0, n=2, limit=4,
                         teacher_template="plain", encoding=FINE_GRID_ENCODING)
    summary = build_teacher_cache(config)
    assert CacheReader(config.out_dir).manifest.encoding == get_encoding(FINE_GRID_ENCODING).spec
    ids = ids_in(config.out_dir)
    good = [i for i in data_file[1] if i < 4]
    assert ids == Counter(f"instr:{i}:{s}" for i in good for s in range(2))
    assert summary["examples_written"] == 2 * len(good)
    records = {r.example_id: r for r in CacheReader(config.out_dir).iter_examples()}
    assert any(records[f"instr:{i}:0"].response_ids.tolist() != records[f"instr:{i}:1"].response_ids.tolist()
               for i in good)
    assert all(len(r.outside_pos) > 0 for r in records.values())  # flat tiny-model distributions
    assert check_alignment(config.out_dir, tiny_teacher, data_file[1], teacher="plain",
                           greedy=False) == len(records)


def test_python_block_parses():
    assert python_block_parses("Here:\n```python\ndef f():\n    return 1\n```\nDone")
    assert python_block_parses("```\nx = 1\n```")
    assert not python_block_parses("```python\ndef f(:\n```")
    assert not python_block_parses("no code here")
    assert python_block_parses("```py\nprint(1)\n")  # cut by the token limit, still parses


def test_student_tokenizer_must_share_the_teachers_ids(tiny_teacher, tiny_student, data_file, tmp_path):
    from tiny_models import build_tokenizer

    config = make_config(tiny_teacher, data_file, tmp_path / "c", limit=3,
                         student_tokenizer=str(tiny_student))
    assert build_teacher_cache(config)["examples_written"] == 2
    build_tokenizer(tmp_path / "other", vocab_size=300)
    config = make_config(tiny_teacher, data_file, tmp_path / "d", limit=3,
                         student_tokenizer=str(tmp_path / "other"))
    with pytest.raises(TeacherConfigError, match="--student-tokenizer .* differs from the teacher's"):
        build_teacher_cache(config)
