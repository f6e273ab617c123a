"""`akd cache export`: plain Parquet that pyarrow alone reads, value for value what CacheReader gives.

The reading side of these tests runs in a separate interpreter that imports pyarrow and
nothing of akd (it asserts so), the way pandas, duckdb or another trainer would see the files.
"""
import json
import subprocess
import sys
import textwrap
import types

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cache_schema import CacheError, CacheReader, CacheWriter, CachedExample
from cache_schema.export import SIDECAR_NAME, ExportConfig, export_cache
from cache_schema.export_layouts import tail_logprob
from pipeline.cli import main

VOCAB, K = 64, 5
IDENTITY = {"teacher": {"model": "tiny", "revision": "r1"}, "tokenizer_fingerprint": "sha256:abc",
            "templates": {"teacher": "plain", "student": "chatml"}, "sampling": {"temperature": 0.0},
            "dataset": {"path": "x.json"}}
PARTIAL, PEAKED, CUT = 3, 7, 4  # fewer than k entries; top-k holds ~all the mass; cut by the limit


def teacher_logprobs(i: int, n: int, rng) -> np.ndarray:
    logits = rng.normal(size=(n, VOCAB)) * 3
    if i == PEAKED:
        logits[:, 0] = 40.0
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def build_cache(path, examples: int = 10) -> dict:
    """A small cache through the real writer; returns each example's true (unrounded) tail mass."""
    writer = CacheWriter.open(path, IDENTITY, k=K, vocab_size=VOCAB, rows_per_shard=4)
    true_tail = {}
    for i in range(examples):
        rng = np.random.default_rng(i)
        n = 3 + i % 4
        logprobs = teacher_logprobs(i, n, rng)
        order = np.argsort(-logprobs, axis=1)[:, : 2 if i == PARTIAL else K]
        top = np.take_along_axis(logprobs, order, axis=1)
        example_id = f"ds:{i}:0"
        true_tail[example_id] = 1.0 - np.exp(top).sum(axis=1)
        writer.add(CachedExample(example_id=example_id, prompt_ids=list(rng.integers(0, VOCAB, 2 + i % 3)),
                                 response_ids=list(order[:, 0]), topk_ids=order, topk_logprobs=top.astype(np.float32),
                                 finish_reason="length" if i == CUT else "stop"))
    writer.close()
    return true_tail


PLAIN_READER = textwrap.dedent("""
    import json, math, sys
    from pathlib import Path
    import pyarrow.parquet as pq

    out = Path(sys.argv[1])
    sidecar = json.loads((out / "akd-export.json").read_text())
    rows = []
    for shard in sidecar["source"]["shards"]:
        rows += pq.read_table(out / shard["name"]).to_pylist()
    akd = [m for m in sys.modules if m.split(".")[0] in ("cache_schema", "pipeline", "stages", "common")]
    assert not akd, akd
    print(json.dumps({"sidecar": sidecar, "rows": rows}))
""")


def read_without_akd(out_dir) -> dict:
    """Every row of the export as plain Python values, read by an interpreter that has no akd."""
    done = subprocess.run([sys.executable, "-c", PLAIN_READER, str(out_dir)], capture_output=True,
                          text=True, check=True, cwd=out_dir)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache")
    return path, build_cache(path)


def test_akd_layout_holds_the_readers_values(cache, tmp_path):
    cache_dir, true_tail = cache
    report = export_cache(cache_dir, tmp_path / "out")
    assert len(report.written) == 3 and report.rows == 10
    exported = read_without_akd(tmp_path / "out")
    records = list(CacheReader(cache_dir))
    assert [r["example_id"] for r in exported["rows"]] == [r.example_id for r in records]
    for row, rec in zip(exported["rows"], records):
        assert row["prompt_ids"] == rec.prompt_ids.tolist()
        assert row["response_ids"] == rec.response_ids.tolist()
        assert row["finish_reason"] == rec.finish_reason
        real = rec.topk_ids != -1  # the reader's padding is left out of the export
        assert row["topk_ids"] == [ids[keep].tolist() for ids, keep in zip(rec.topk_ids, real)]
        for got, lp, keep in zip(row["topk_logprobs"], rec.topk_logprobs, real):
            np.testing.assert_array_equal(np.float32(got), lp[keep])  # exactly the cache's precision
        np.testing.assert_array_equal(np.float32(row["topk_mass"]), rec.topk_mass)
        np.testing.assert_array_equal(np.float32(row["tail_logprob"]), tail_logprob(rec))
        # and the tail is the teacher's, to float32's resolution of the mass (6e-8 below 1)
        np.testing.assert_allclose(np.exp(np.float64(row["tail_logprob"])), true_tail[rec.example_id], atol=1.2e-7)
    assert len(exported["rows"][PARTIAL]["topk_ids"][0]) == 2
    assert exported["rows"][PEAKED]["tail_logprob"][0] < -15  # a tiny tail stays a number, or -inf
    assert exported["rows"][CUT]["finish_reason"] == "length"
    source = exported["sidecar"]["source"]
    assert source["identity"] == IDENTITY and source["k"] == K
    assert exported["sidecar"]["complete"] and exported["sidecar"]["layout"] == "akd"


def test_export_reads_as_one_table_with_plain_pyarrow_and_pandas(cache, tmp_path):
    cache_dir, _ = cache
    export_cache(cache_dir, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "shards")  # the whole directory, as duckdb/pandas would
    assert table.num_rows == 10
    assert table.schema.field("topk_ids").type == pa.list_(pa.list_(pa.int32()))
    assert table.schema.field("topk_logprobs").type == pa.list_(pa.list_(pa.float32()))
    tokens = pc.sum(pc.list_value_length(table["response_ids"])).as_py()
    assert tokens == CacheReader(cache_dir).manifest.response_tokens
    assert pc.sum(pc.equal(table["finish_reason"], "length")).as_py() == 1
    frame = table.to_pandas()
    assert frame.loc[frame.example_id == "ds:2:0", "response_ids"].iloc[0].tolist() == \
        next(r for r in CacheReader(cache_dir) if r.example_id == "ds:2:0").response_ids.tolist()


def test_axolotl_layout_puts_response_token_j_at_row_prompt_plus_j_minus_1(cache, tmp_path):
    cache_dir, _ = cache
    export_cache(cache_dir, tmp_path / "out", ExportConfig(layout="axolotl"))
    rows = read_without_akd(tmp_path / "out")["rows"]
    for row, rec in zip(rows, CacheReader(cache_dir)):
        prompt, n = rec.prompt_ids.size, rec.num_tokens
        assert row["input_ids"] == rec.prompt_ids.tolist() + rec.response_ids.tolist()
        assert row["labels"] == [-100] * prompt + rec.response_ids.tolist()
        assert row["attention_mask"] == [1] * (prompt + n)
        ids, lps, mask = (np.array(row[c]) for c in ("target_token_ids", "target_logprobs", "target_mask"))
        assert ids.shape == lps.shape == mask.shape == (prompt + n, K)
        # Axolotl's rule: row t describes input_ids[t + 1]; it is trained where labels[t + 1] != -100
        labels = np.array(row["labels"])
        np.testing.assert_array_equal(mask.any(axis=1), np.append(labels[1:] != -100, False))
        # the cache's responses are the teacher's greedy tokens: each row's top-1 is the next input id
        trained = np.flatnonzero(mask.any(axis=1))
        np.testing.assert_array_equal(ids[trained, 0], np.array(row["input_ids"])[trained + 1])
        real = rec.topk_ids != -1
        block = slice(prompt - 1, prompt - 1 + n)
        np.testing.assert_array_equal(mask[block], real)
        np.testing.assert_array_equal(ids[block][real], rec.topk_ids[real])
        expected = rec.topk_logprobs.astype(np.float64)
        expected = expected - np.log(np.where(real, np.exp(expected), 0).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(lps[block][real], expected[real], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.exp(np.where(mask == 1, lps, -np.inf)).sum(axis=1)[trained], 1, rtol=1e-5)
        assert (lps[mask == 0] == -1e9).all() and (ids[mask == 0] == 0).all()


def test_resumed_export_rewrites_only_the_missing_shard(cache, tmp_path):
    cache_dir, _ = cache
    out = tmp_path / "out"
    export_cache(cache_dir, out)
    shards = sorted((out / "shards").glob("*.parquet"))
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in shards}
    shards[1].unlink()
    (out / "shards" / ".tmp-w000-00002.parquet").write_bytes(b"half a shard")  # a killed run's leftover
    report = export_cache(cache_dir, out)
    assert report.written == [f"shards/{shards[1].name}"] and len(report.kept) == 2
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in (out / "shards").glob("*.parquet")}
    for name in before:
        if name == shards[1].name:
            assert after[name][2] == before[name][2]  # the same bytes again
        else:
            assert after[name] == before[name]  # untouched
    assert not list((out / "shards").glob(".tmp-*"))
    shards[2].write_bytes(b"PAR1 not a finished export PAR1")
    assert export_cache(cache_dir, out).written == [f"shards/{shards[2].name}"]


def test_out_holding_another_export_is_refused_unless_overwrite(cache, tmp_path):
    cache_dir, _ = cache
    out = tmp_path / "out"
    export_cache(cache_dir, out)
    with pytest.raises(CacheError, match='layout: OUT has "akd", this export has "axolotl"'):
        export_cache(cache_dir, out, ExportConfig(layout="axolotl"))
    report = export_cache(cache_dir, out, ExportConfig(layout="axolotl", overwrite=True))
    assert len(report.written) == 3
    assert json.loads((out / SIDECAR_NAME).read_text())["layout"] == "axolotl"


@pytest.mark.parametrize("make_bad, message", [
    (lambda tmp: tmp / "missing", "missing: does not exist"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "file.txt: is not a directory"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "empty/manifest.json: no manifest"),
])
def test_bad_cache_path_is_one_line_error(tmp_path, make_bad, message):
    bad = make_bad(tmp_path)
    result = CliRunner().invoke(main, ["cache", "export", str(bad), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ") and message in result.output
    assert not (tmp_path / "out").exists()


def test_cli_exports_and_refuses_to_write_into_the_cache(cache, tmp_path):
    cache_dir, _ = cache
    result = CliRunner().invoke(main, ["cache", "export", str(cache_dir), str(tmp_path / "out"), "--layout", "axolotl"])
    assert result.exit_code == 0, result.output
    assert "axolotl layout, 3 shards written, 0 kept, 10 examples" in result.output
    result = CliRunner().invoke(main, ["cache", "export", str(cache_dir), str(cache_dir)])
    assert result.exit_code == 1 and "would overwrite the cache's own shards" in result.output


def test_tail_comes_from_the_reader_not_from_the_mass():
    """The reader hands out tail_logprob; the export takes it rather than 1 - topk_mass."""
    stored = np.array([-20.5, -3.25], np.float32)
    record = types.SimpleNamespace(tail_logprob=stored, topk_mass=np.array([1.0, 0.5], np.float32))
    np.testing.assert_array_equal(tail_logprob(record), stored)
