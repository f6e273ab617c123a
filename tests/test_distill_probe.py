"""--probe-cache: a cache only evaluated, never trained on, reported beside (never pooled with)
the training caches' held-out figures."""
import dataclasses
import json
import os

import pytest
from click.testing import CliRunner

from cache_schema import CacheReader
from distill_cache import random_cache, student_cache_options
from pipeline.cli import main
from stages.distill import DistillConfig, DistillConfigError, TokenizerMismatchError, train
from stages.distill.config import BatchingConfig
from stages.distill.data import heldout_batches
from stages.distill.mixing import open_mix, open_probes
from stages.distill.run_folder import read_heldout_sequences

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_a_probe_is_read_from_its_start_whatever_the_held_out_share(tmp_path):
    cache = random_cache(tmp_path / "refs", examples=12, rows_per_shard=4, prefix="refs")
    reader = CacheReader(cache)
    options = BatchingConfig(max_batch_tokens=64, max_seq_len=64, eval_fraction=0.0)
    assert heldout_batches(reader, options, max_examples=50) == ([], 0)  # the training caches' rule
    batches, examples = heldout_batches(reader, options, max_examples=50, every_example=True)
    ids = [i for batch in batches for i in batch["example_ids"]]
    assert examples == 12 and sorted(ids) == sorted(f"refs:{i}:0" for i in range(12))
    _, first = heldout_batches(reader, options, max_examples=5, every_example=True)
    assert first == 5


def test_a_probe_of_another_tokenizer_is_refused_in_one_line(tmp_path):
    train_cache = random_cache(tmp_path / "train", examples=10)
    other = random_cache(tmp_path / "refs", examples=10, fingerprint="sha256:other")
    with pytest.raises(TokenizerMismatchError, match="cannot be compared") as caught:
        open_probes([str(other)], open_mix([str(train_cache)]))
    assert "\n" not in str(caught.value) and str(other) in str(caught.value)


def test_a_cache_cannot_be_trained_on_and_probed():
    with pytest.raises(DistillConfigError, match="--probe-cache: a, b must be distinct caches"):
        DistillConfig(caches=("a",), probe_caches=("a", "b"))


@pytest.fixture(scope="module")
def runs(tiny_student, tmp_path_factory):
    """The same short run without and with a probe (every setting else equal)."""
    root = tmp_path_factory.mktemp("probe")
    common = student_cache_options(tiny_student)
    teacher = random_cache(root / "teacher", examples=30, prefix="teacher", **common)
    refs = random_cache(root / "refs", examples=10, k=6, seed=3, prefix="refs", **common)
    base = DistillConfig.from_options(dict(
        caches=[str(teacher)], student=str(tiny_student), run_dir=str(root / "plain"), max_steps=3, lr=1e-3,
        warmup_steps=0, precision="float32", progress=False, plots=False, max_batch_tokens=96, max_seq_len=96,
        max_batch_examples=4, eval_fraction=0.3, eval_every=3, threads=1, final_dtype="float32",
        heldout_per_sequence=True, deterministic=True))
    probed = dataclasses.replace(base, run_dir=str(root / "probed"), probe_caches=(str(refs),))
    return refs, train(base), probed, train(probed)


def test_probe_figures_sit_beside_the_held_out_ones_and_change_nothing_else(runs):
    refs, plain, probed_config, probed = runs
    evals = [r for r in probed["metrics"] if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3]
    response_tokens = sum(len(e.response_ids) for e in CacheReader(refs).iter_examples())
    for record in evals:
        assert record["eval_tokens/probe-refs"] == response_tokens  # every example, none held out by hash
        assert record["eval_nll/probe-refs"] > 0 and record["eval_fkl/probe-refs"] > 0
        assert record["eval_time_s"] > 0  # what a check cost, for the grids' profiles
    assert evals[1]["eval_nll/probe-refs"] != evals[0]["eval_nll/probe-refs"]  # the student moved
    # the probe is neither trained on nor pooled: training and held-out figures are the plain run's
    strip = [{k: v for k, v in r.items() if "probe" not in k and not k.endswith("_s")} for r in probed["metrics"]]
    assert strip == [{k: v for k, v in r.items() if not k.endswith("_s")} for r in plain["metrics"]]
    assert set(probed["data_counts_by_cache"]) == {"teacher"}
    rows = read_heldout_sequences(probed_config.run_path, 3)
    assert {r["cache"] for r in rows.values()} == {"teacher", "probe-refs"}
    assert sum(r["cache"] == "probe-refs" for r in rows.values()) == 10


def test_a_run_resumes_with_other_probes(runs, tiny_student):
    _, _, probed_config, _ = runs
    record = json.loads((probed_config.run_path / "config.json").read_text())
    assert record["options"]["probe_caches"] == list(probed_config.probe_caches)
    # resuming the finished run without the probe is not refused as another run's
    done = CliRunner().invoke(main, ["distill", "--cache", probed_config.caches[0], "--student", str(tiny_student),
                                     "--run-dir", str(probed_config.run_path), "--max-steps", "3", "--lr", "1e-3",
                                     "--warmup-steps", "0", "--precision", "float32", "--no-progress",
                                     "--max-batch-tokens", "96", "--max-seq-len", "96", "--max-batch-examples", "4",
                                     "--eval-fraction", "0.3", "--eval-every", "3", "--threads", "1",
                                     "--final-dtype", "float32", "--heldout-per-sequence", "--deterministic",
                                     "--no-plots"])
    assert done.exit_code == 0, done.output


def test_the_study_reads_a_probe_apart_from_the_held_out_slice(tmp_path):
    from stages.distill.run_folder import METRICS_FILE, write_heldout_sequences
    from study.engine.results import heldout_curve, heldout_sequences, probe_curve, probe_sequences

    rows = [{"cache": "teacher", "example_id": "t:0:0", "tokens": 5, "ce": 1.0},
            {"cache": "probe-refs", "example_id": "r:0:0", "tokens": 7, "ce": 2.0},
            {"cache": "probe-other", "example_id": "o:0:0", "tokens": 3, "ce": 3.0}]
    write_heldout_sequences(tmp_path, 0, 0, rows)
    write_heldout_sequences(tmp_path, 4, 0, [{**r, "ce": r["ce"] / 2} for r in rows])
    metrics = [{"split": "eval", "step": 0, "eval_fkl": 0.5, "eval_nll/probe-refs": 2.0},
               {"split": "train", "step": 2, "tokens": 100}, {"split": "train", "step": 4, "tokens": 50},
               {"split": "eval", "step": 4, "eval_fkl": 0.3, "eval_nll/probe-refs": 1.0}]
    (tmp_path / METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in metrics))
    assert list(heldout_sequences(tmp_path)) == ["teacher/t:0:0"]  # comparisons of runs never see a probe
    assert probe_sequences(tmp_path, "refs") == {"r:0:0": {**rows[1], "ce": 1.0}}
    assert probe_sequences(tmp_path, "refs", 0)["r:0:0"]["ce"] == 2.0
    assert probe_curve(tmp_path, "refs") == [{"step": 0, "tokens_seen": 0, "nll": 2.0},
                                            {"step": 4, "tokens_seen": 150, "nll": 1.0}]
    assert [p["fkl"] for p in heldout_curve(tmp_path)] == [0.5, 0.3] and probe_curve(tmp_path, "none") == []
