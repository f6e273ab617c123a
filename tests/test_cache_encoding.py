"""Every cache encoding: exact ids and mass, bounded log-prob error, edge cases, old caches."""
import itertools
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from cache_schema import (
    DEFAULT_ENCODING,
    CacheError,
    CacheReader,
    CacheVerifyError,
    CacheWriter,
    CachedExample,
    verify_cache,
)
from cache_schema.encoding import get_encoding
from cache_schema.logprob_codes import LogprobGrid
from common.files import file_sha256
from distill_cache import FINE_GRID_ENCODING

VOCAB = 151_936
IDENTITY = {"teacher": {"model": "t"}, "tokenizer_fingerprint": "sha256:x", "templates": {},
            "sampling": {"temperature": 0.0}, "dataset": {"path": "d"}}
COMPACT = [f"compact-v1:ids={i},top1={t}"
           for i, t in itertools.product(("freq", "raw"), ("skip", "keep"))]
ALL_ENCODINGS = [*COMPACT, FINE_GRID_ENCODING]
LOGPROB_BOUND = {FINE_GRID_ENCODING: 1e-4 + 1e-6}  # half its fine step, + float32 decoding; the default: 0.01
DEEPEST_ERROR = {FINE_GRID_ENCODING: 0.005}  # half its deep step


def random_example(i: int, k: int, rng, n: int = 7, vocab: int = VOCAB) -> CachedExample:
    """Flat random distributions: large, distinct ids, sampled (not greedy) response tokens."""
    logits = rng.normal(size=(n, 2000)) * 2.5
    logprobs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    order = np.argsort(-logprobs, axis=1)[:, :k]
    vocab_ids = rng.choice(vocab, size=2000, replace=False)
    response = vocab_ids[order[:, 0]].copy()
    response[::3] = vocab_ids[order[::3, -1]]  # sampled tokens that are not the top-1
    lp = np.take_along_axis(logprobs, order, 1).astype(np.float32)
    return CachedExample(f"r:{i}:0", list(rng.integers(0, vocab, 4)), list(response),
                         vocab_ids[order], lp, "stop", lp[:, 0].copy())


def peaked_example(i: int, k: int, rng, n: int = 40) -> CachedExample:
    """Code-like: top-1 p ~ 0.9-0.9999, a Zipf-skewed id pool, greedy (top-1 = response)."""
    pool = rng.zipf(1.3, size=(n, 4 * k)) % VOCAB
    ids = np.stack([np.unique(row)[rng.permutation(np.unique(row).size)][:k] for row in pool])
    top1 = np.log(rng.uniform(0.9, 0.9999, size=(n, 1)))
    decay = -rng.exponential(2.0, size=(n, ids.shape[1] - 1)).cumsum(1)  # a falling tail
    share = decay - np.log(np.exp(decay).sum(1, keepdims=True)) + np.log(0.9)  # keeps 10% outside
    rest = np.log(-np.expm1(top1)) + share
    lp = np.concatenate([top1, rest], 1).astype(np.float32)
    return CachedExample(f"p:{i}:0", [1, 2, 3], list(ids[:, 0]), ids, lp, "length", lp[:, 0].copy())


def write(path, examples, k, encoding, vocab=VOCAB, **kw):
    writer = CacheWriter.open(path, IDENTITY, k=k, vocab_size=vocab, encoding=encoding, **kw)
    for ex in examples:
        writer.add(ex)
    return writer.close()


def check_round_trip(path, examples, k, encoding, batch_rows=64):
    records = {r.example_id: r for r in CacheReader(path).iter_examples(batch_rows=batch_rows)}
    bound = LOGPROB_BOUND.get(encoding, 0.01)
    for ex in examples:
        rec = records[ex.example_id]
        ids = np.asarray(ex.topk_ids)
        lp = np.asarray(ex.topk_logprobs, np.float32)
        width = ids.shape[1]
        np.testing.assert_array_equal(rec.topk_ids[:, :width], ids)
        assert (rec.topk_ids[:, width:] == -1).all() and (rec.topk_logprobs[:, width:] == -1e4).all()
        np.testing.assert_array_equal(rec.response_ids, ex.response_ids)
        mass = np.minimum(np.exp(lp.astype(np.float64)).sum(1), 1.0).astype(np.float32)
        np.testing.assert_array_equal(rec.topk_mass, mass)  # exact at float32
        error = np.abs(rec.topk_logprobs[:, :width] - lp)
        assert error[lp >= np.log(1e-3)].max() <= bound
        assert error.max() <= DEEPEST_ERROR.get(encoding, 0.25) + 1e-6  # half the deepest grid step
        assert rec.topk_ids.dtype == np.int64 and rec.topk_logprobs.dtype == np.float32


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
@pytest.mark.parametrize("kind", ["random", "peaked"])
def test_round_trip_of_every_encoding(tmp_path, encoding, kind):
    rng = np.random.default_rng(7)
    make = random_example if kind == "random" else peaked_example
    examples = [make(i, 20, rng) for i in range(5)]
    write(tmp_path, examples, 20, encoding, rows_per_shard=3)
    check_round_trip(tmp_path, examples, 20, encoding, batch_rows=2)  # batches cut shards mid-way
    verify_cache(tmp_path)


@pytest.mark.parametrize("encoding", ALL_ENCODINGS)
def test_edge_cases_k1_padding_and_ids_near_2_pow_18(tmp_path, encoding):
    rng = np.random.default_rng(3)
    vocab = 1 << 18
    k1 = [random_example(i, 1, rng, vocab=vocab) for i in range(2)]
    write(tmp_path / "k1", k1, 1, encoding, vocab=vocab)
    check_round_trip(tmp_path / "k1", k1, 1, encoding)
    short = [random_example(i, 3, rng, n=1 + i, vocab=vocab) for i in range(3)]  # n = 1 included
    short[0].topk_ids[0, 0] = vocab - 1
    short[0].response_ids[0] = vocab - 1
    write(tmp_path / "pad", short, 5, encoding, vocab=vocab)  # 3 of k = 5 entries: padded
    check_round_trip(tmp_path / "pad", short, 5, encoding)
    verify_cache(tmp_path / "pad")


def test_default_is_a_compact_encoding_spelled_out_in_the_manifest(tmp_path):
    manifest = write(tmp_path, [peaked_example(0, 4, np.random.default_rng(0))], 4, DEFAULT_ENCODING)
    assert manifest.encoding.startswith("compact-v1:") and "fine=" in manifest.encoding
    assert get_encoding(manifest.encoding) == get_encoding(DEFAULT_ENCODING)
    assert get_encoding(manifest.encoding).spec == manifest.encoding


@pytest.mark.parametrize("spec, message", [
    ("zip-v9", "unknown cache encoding"), ("compact-v1:ids=huffman", "ids='huffman'"),
    ("compact-v1:fine", "not key=value"), ("compact-v1:fine=9", "must be in"),
    ("compact-v1:colour=red", "colour"), ("int32-f16", "no longer written or read; a cache in it must be rebuilt"),
])
def test_bad_encoding_specs_are_refused(spec, message):
    with pytest.raises(CacheError, match=message):
        get_encoding(spec)


def test_a_shard_with_another_column_order_still_reads_and_verifies(tmp_path):
    """Columns are found by name, not by place."""
    examples = [random_example(i, 4, np.random.default_rng(i)) for i in range(3)]
    write(tmp_path, examples, 4, "compact-v1:ids=raw,top1=keep")
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    shard = tmp_path / manifest["shards"][0]["name"]
    table = pq.read_table(shard)
    pq.write_table(table.select(list(reversed(table.column_names))), shard, compression="zstd")
    manifest["shards"][0].update(bytes=shard.stat().st_size, sha256=file_sha256(shard))
    manifest_path.write_text(json.dumps(manifest))
    verify_cache(tmp_path)
    check_round_trip(tmp_path, examples, 4, "compact-v1:ids=raw,top1=keep")


def test_missing_id_table_is_named(tmp_path):
    examples = [peaked_example(0, 4, np.random.default_rng(0))]
    write(tmp_path, examples, 4, "compact-v1:ids=freq")
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    shard = tmp_path / manifest["shards"][0]["name"]
    pq.write_table(pq.read_table(shard), shard)  # rewritten without the footer table
    manifest["shards"][0].update(bytes=shard.stat().st_size, sha256=file_sha256(shard))
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CacheVerifyError, match=f"{shard.name}: .*id rank table"):
        verify_cache(tmp_path)
    with pytest.raises(CacheError, match=shard.name):
        list(CacheReader(tmp_path))


def test_grid_error_is_within_half_a_step_and_codes_never_decrease():
    grid = LogprobGrid(coarse=0.1, deep=0.25)
    top = -np.linspace(0, 6.9, 200)[:, None]  # a dense sweep of the fine zone
    drops = np.sort(np.random.default_rng(0).uniform(0, 40, size=(200, 49)), axis=1)
    lp = np.concatenate([top, top - drops], axis=1)
    deltas = grid.encode(lp)
    assert deltas.dtype == np.uint16
    error = np.abs(grid.decode(deltas) - lp)
    assert error[lp >= np.log(1e-3)].max() <= 0.0098 + 1e-6
    assert error[lp >= np.log(1e-6)].max() <= 0.05 + 1e-6
    assert error.max() <= 0.125 + 1e-6
    assert grid.max_error(np.log(1e-3)) <= 0.0098 + 1e-9 and grid.max_error(-20) == pytest.approx(0.125)


def test_grid_tolerates_float_noise_in_the_sort_order():
    grid = LogprobGrid(coarse=0.1, deep=0.25)
    lp = np.array([[-0.5, -0.49995, -3.0]])  # out of order by 5e-5 nats, as the writer allows
    decoded = grid.decode(grid.encode(lp))
    assert (np.diff(decoded, axis=1) <= 0).all() and np.abs(decoded - lp).max() <= 0.01


def test_byte_planes_round_trip_and_refuse_values_that_do_not_fit():
    from cache_schema import byte_planes

    values = np.array([0, 1, 255, 256, 65535, (1 << 24) - 1], np.uint32)
    np.testing.assert_array_equal(byte_planes.unpack(byte_planes.pack(values, 3), 3), values)
    with pytest.raises(ValueError, match="does not fit in 2 bytes"):
        byte_planes.pack(values, 2)


def test_cache_benchmark_runs_on_kept_answers(tmp_path):
    """`make bench` path: encode kept top-k answers, decode, report bytes and errors."""
    import sys
    from pathlib import Path

    from click.testing import CliRunner

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_cache import main
    from teacher_topk import TeacherTopK

    rng = np.random.default_rng(1)
    examples = [peaked_example(i, 8, rng, n=30) for i in range(4)]
    answers = TeacherTopK({"model": "synthetic", "stand_in": True, "k": 8},
                          [np.asarray(e.prompt_ids, np.int32) for e in examples],
                          [np.asarray(e.response_ids, np.int32) for e in examples],
                          [e.topk_ids.astype(np.int32) for e in examples],
                          [e.topk_logprobs for e in examples], [e.finish_reason for e in examples])
    answers.save(tmp_path / "answers.npz")
    out = tmp_path / "cache.json"
    result = CliRunner().invoke(main, ["--data", str(tmp_path / "answers.npz"), "--out", str(out), "--ks", "4,8",
                                       "--encoding", FINE_GRID_ENCODING, "--encoding", DEFAULT_ENCODING,
                                       "--zstd-levels", "9"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["k"], r["encoding"].split(":")[0]) for r in rows] == [
        (4, "compact-v1"), (4, "compact-v1"), (8, "compact-v1"), (8, "compact-v1")]
    assert rows[2]["encoding"] == get_encoding(FINE_GRID_ENCODING).spec and rows[2]["max_error_p_ge_1e-3"] <= 1e-4 + 1e-6
    for r in rows:
        assert r["max_error_p_ge_1e-3"] <= 0.01 and r["bytes_per_token"] > 0 and r["read_tokens_per_s"] > 0
    assert rows[3]["bytes_per_token"] < rows[2]["bytes_per_token"]  # the default grid: fewer codes, fewer bytes
