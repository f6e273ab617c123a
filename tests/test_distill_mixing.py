"""Training on a mix of caches: proportions, independent epochs, one tokenizer, the record, eval per cache."""
import itertools
import json
import os
from collections import Counter

import pytest
import torch
from click.testing import CliRunner

from cache_schema import CacheError
from distill_cache import random_cache, student_cache_options
from pipeline.cli import main
from pipeline.eval_command import distill_run_meta
from stages.distill import DistillConfig, TokenizerMismatchError, train
from stages.distill.config import BatchingConfig
from stages.distill.data import DataPosition, MixedBatches, training_loader
from stages.distill.mixing import open_mix

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OPTIONS = BatchingConfig(max_batch_tokens=64, max_seq_len=64, eval_fraction=0.0, shuffle_buffer=8, sort_pool=8)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A big cache (60 records, k 4) and a small one (20 records, k 6) from one tokenizer."""
    root = tmp_path_factory.mktemp("mix")
    return (str(random_cache(root / "big", examples=60, rows_per_shard=5, prefix="big")),
            str(random_cache(root / "small", examples=20, rows_per_shard=5, k=6, seed=1, prefix="small")))


def drawn(paths, weights=(), items=1000, **kw) -> tuple[list[dict], Counter]:
    dataset = MixedBatches(open_mix(paths, weights), OPTIONS, seed=5, **kw)
    found = list(itertools.islice(training_loader(dataset), items))
    used = Counter()
    for item in found:
        for i, counts in enumerate(item["counts"]):
            used[i] += counts.get("examples", 0)
    return found, used


@pytest.mark.parametrize("weights, expected", [((1.0, 3.0), 0.75), ((3.0, 1.0), 0.25), ((), 0.25)],
                         ids=["1:3", "3:1", "by-size"])
def test_proportions_over_many_draws_match_the_weights(pair, weights, expected):
    """Without weights: in proportion to the caches' sizes (20 of 80 records)."""
    found, used = drawn(pair, weights)
    share = used[1] / (used[0] + used[1])
    assert used[0] + used[1] > 2000
    assert share == pytest.approx(expected, abs=0.03)
    ids = [i for item in found for i in item["batch"]["example_ids"]]
    assert sum(i.startswith("small:") for i in ids) == used[1]  # the counts are the batches' examples


def test_a_cache_that_runs_out_restarts_its_own_epoch_reshuffled(pair):
    found, used = drawn(pair, (1.0, 3.0), items=60)
    seen = Counter(i for item in found for i in item["batch"]["example_ids"])
    small = {i: n for i, n in seen.items() if i.startswith("small:")}
    big = {i: n for i, n in seen.items() if i.startswith("big:")}
    epochs = used[1] // 20
    assert epochs >= 3 and len(small) == 20
    assert set(small.values()) <= {epochs, epochs + 1}  # each epoch holds every example once
    assert used[0] < 60 and set(big.values()) == {1}  # the big cache is still in its first epoch
    order = [i for item in found for i in item["batch"]["example_ids"] if i.startswith("small:")]
    assert order[:20] != order[20:40]  # (within pools; the batches of a pool are reordered too)
    position = DataPosition()
    for item in found:
        position.advance(item, 1)
    assert position.epochs(2) == [0, epochs]  # what the train log shows


def test_positions_are_padded_to_the_largest_k_and_the_loss_skips_the_padding(pair):
    found, _ = drawn(pair, (1.0, 1.0), items=10)
    for item in found:
        ids = item["batch"]["topk_ids"]
        assert ids.shape[1] == 6
    assert open_mix(pair).k == 6
    rows = torch.cat([item["batch"]["topk_ids"] for item in found])
    padded = (rows[:, 4:] == -1).all(dim=1)
    assert 0 < int(padded.sum()) < len(rows)  # positions of the k = 4 cache
    assert (rows[padded][:, :4] >= 0).all()


def test_caches_of_other_tokenizers_are_refused_in_one_line_naming_both(pair, tmp_path, monkeypatch):
    other = random_cache(tmp_path / "other", examples=10, rows_per_shard=5, fingerprint="sha256:other")
    with pytest.raises(TokenizerMismatchError) as caught:
        open_mix([pair[0], str(other)])
    message = str(caught.value)
    assert "\n" not in message and pair[0] in message and str(other) in message
    assert "sha256:random" in message and "sha256:other" in message
    monkeypatch.setattr("pipeline.distill_command.resolve_model", lambda spec, *_, **__: spec)  # no model needed
    done = CliRunner().invoke(main, ["distill", "--cache", pair[0], "--cache", str(other), "--student", "x/y",
                                     "--runs-dir", str(tmp_path / "runs")])
    assert done.exit_code == 1 and "different tokenizers" in done.output
    assert len(done.output.strip().splitlines()) == 2  # the allocator line, then the error
    assert not (tmp_path / "runs").exists()


def test_too_few_shards_for_the_readers_is_one_line(pair):
    with pytest.raises(CacheError, match=r"small has 4 shard\(s\) for 2 process\(es\) x 3 loader worker") as caught:
        open_mix(pair).check_shards(2, 3)
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def mixed_run(tiny_student, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed_run")
    common = student_cache_options(tiny_student)
    teacher = random_cache(root / "teacher", examples=30, prefix="teacher", **common)
    onpolicy = random_cache(root / "onpolicy", examples=20, k=6, seed=1, prefix="onpolicy", **common)
    config = DistillConfig.from_options(dict(
        caches=[str(onpolicy), str(teacher)], cache_weights=[1.0, 1.0], student=str(tiny_student),
        run_dir=str(root / "run"), max_steps=3, lr=1e-3, warmup_steps=0, precision="float32", progress=False, plots=True,
        max_batch_tokens=96, max_seq_len=96, max_batch_examples=4, eval_fraction=0.3, eval_every=3,
        threads=1, final_dtype="float32"))
    return config, train(config)


def test_config_json_records_the_mix(mixed_run):
    config, _ = mixed_run
    record = json.loads((config.run_path / "config.json").read_text())
    mix = record["mix"]
    assert mix["sampling"] == "weights" and mix["k"] == 6
    assert [c["path"] for c in mix["caches"]] == [str(os.path.realpath(p)) for p in config.caches]
    assert [c["probability"] for c in mix["caches"]] == [0.5, 0.5]
    assert [c["label"] for c in mix["caches"]] == ["onpolicy", "teacher"]
    assert [c["identity"]["dataset"] for c in mix["caches"]] == [{"seed": 1}, {"seed": 0}]
    assert [c["k"] for c in mix["caches"]] == [6, 4] and [c["rows"] for c in mix["caches"]] == [20, 30]
    assert record["options"]["caches"] == list(config.caches) and record["options"]["cache_weights"] == [1.0, 1.0]
    meta = distill_run_meta(config.run_path / "final")  # what akd eval files the distilled model under
    assert meta["loss"] == "akd" and meta["cache"] == " + ".join(f"{c['path']} (0.50)" for c in mix["caches"])


def test_eval_metrics_per_cache_and_pooled(mixed_run):
    config, summary = mixed_run
    evals = [r for r in summary["metrics"] if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3]
    for record in evals:
        parts = [(record[f"eval_tokens/{c}"], record[f"eval_fkl/{c}"]) for c in ("onpolicy", "teacher")]
        assert all(tokens > 0 for tokens, _ in parts)
        assert record["eval_tokens"] == sum(tokens for tokens, _ in parts)
        pooled = sum(tokens * fkl for tokens, fkl in parts) / record["eval_tokens"]
        assert record["eval_fkl"] == pytest.approx(pooled, rel=1e-12)
        assert parts[0][1] != parts[1][1]
    counts = summary["data_counts_by_cache"]
    assert set(counts) == {"onpolicy", "teacher"} and all(c["examples"] > 0 for c in counts.values())
    assert summary["data_counts"]["examples"] == sum(c["examples"] for c in counts.values())
    assert (config.run_path / "losses.png").stat().st_size > 1000
