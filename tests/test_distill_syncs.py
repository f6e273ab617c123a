"""The training loop keeps its statistics on the device: a step that logs nothing reads no tensor
back to the host and makes at most one all-reduce (the step's token count, which weights the
loss); a logging step reads its statistics back once.

Counted with tests/host_syncs.py on a tiny student: 6 steps of 2 micro-batches, logging every
3rd step, so steps 1, 2, 4 and 5 log nothing, step 3 only logs and step 6 logs, evaluates and
saves. Only the loop's own code is held to this here: the loss (stages/distill/losses) and
the model (transformers) still read values back inside each forward; the counter buckets them
apart.
"""
import json
import os
from pathlib import Path

import pytest
import torch

from cache_schema import tokenizer_fingerprint
from distill_cache import random_cache
from host_syncs import SyncCounter
from torchrun import build_twice_if_killed, torchrun
from stages.distill import DistillConfig, train

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
QUIET_STEPS = (1, 2, 4, 5)
LOGGING_STEP = 3
TIMING_KEYS = ("step_time_s", "data_wait_s", "eval_time_s")


@pytest.fixture(scope="module")
def sync_cache(tiny_student, tmp_path_factory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    return random_cache(tmp_path_factory.mktemp("syncs") / "cache", examples=40, rows_per_shard=10,
                        vocab=len(tokenizer), fingerprint=tokenizer_fingerprint(tokenizer), response_len=(3, 20))


def options(cache, student, run_dir) -> dict:
    return dict(caches=[str(cache)], student=str(student), run_dir=str(run_dir), max_steps=6, log_every=3,
                grad_accum=2, lr=1e-3, warmup_steps=1, precision="float32", threads=1, num_workers=0, max_batch_tokens=96,
                max_seq_len=96, max_batch_examples=3, eval_fraction=0.2, eval_every=100, checkpoint_every=100,
                progress=False, plots=False, final_dtype="float32")


def stats_left_on_the_device(monkeypatch):
    """The loss as it should be: statistics as device tensors (float64 0-d), nothing read back.
    Training forwards only: heldout.py still sums its statistics as Python numbers."""
    from stages.distill import student_model as student

    real = student.topk_distill_loss

    def loss(*args, **kwargs):
        value, stats = real(*args, **kwargs)
        if not torch.is_grad_enabled():
            return value, stats
        return value, {k: v if k == "tokens" else torch.tensor(v, dtype=torch.float64) for k, v in stats.items()}

    monkeypatch.setattr(student, "topk_distill_loss", loss)


def train_records(summary: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in summary["metrics"]]


@pytest.mark.parametrize("stats_on", ["host", "device"])
def test_a_step_that_logs_nothing_reads_nothing_back(stats_on, sync_cache, tiny_student, tmp_path, monkeypatch):
    if stats_on == "device":
        stats_left_on_the_device(monkeypatch)
    with SyncCounter(grad_accum=2) as counter:
        summary = train(DistillConfig.from_options(options(sync_cache, tiny_student, tmp_path / "run")))
    syncs = counter.per_step("loop", "sync")
    print(json.dumps(counter.table(), indent=1))
    assert summary["steps"] == 6 and [r["step"] for r in summary["metrics"] if r["split"] == "train"] == [3, 6]
    assert {step: syncs[step] for step in QUIET_STEPS} == dict.fromkeys(QUIET_STEPS, 0)
    assert syncs[LOGGING_STEP] == 1  # one packed read of the step's statistics
    assert not counter.per_step("loop", "collective")  # one process: nothing to reduce


def test_statistics_left_on_the_device_log_the_same_numbers(sync_cache, tiny_student, tmp_path, monkeypatch):
    on_host = train(DistillConfig.from_options(options(sync_cache, tiny_student, tmp_path / "host")))
    stats_left_on_the_device(monkeypatch)
    on_device = train(DistillConfig.from_options(options(sync_cache, tiny_student, tmp_path / "device")))
    assert train_records(on_device) == train_records(on_host)


SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from host_syncs import SyncCounter
from stages.distill import DistillConfig, train
options = json.loads(sys.argv[1])
with SyncCounter(options["grad_accum"]) as counter:
    train(DistillConfig.from_options(options))
import torch.distributed as dist
rank = int(__import__("os").environ["RANK"])
counts = {{kind: {{bucket: counter.per_step(bucket, kind) for bucket in ("loop", "loss", "model", "loader")}}
          for kind in ("sync", "collective")}}
counts["all_reduce"] = counter.per_step("loop", "collective", "all_reduce")
with open(sys.argv[2] + f".{{rank}}.json", "w") as fh:
    json.dump(counts, fh)
"""


@pytest.mark.slow
def test_two_ranks_make_one_all_reduce_per_quiet_step(sync_cache, tiny_student, tmp_path):
    script = tmp_path / "count_syncs.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))

    def run(root: Path) -> Path:
        opts = options(sync_cache, tiny_student, root / "run")
        torchrun(script, [json.dumps(opts), str(root / "counts")], nproc=2, port_offset=7)
        return root / "counts"

    attempts = iter(("first", "second"))
    counts_at = build_twice_if_killed(run, lambda: tmp_path / next(attempts))
    for rank in (0, 1):
        counts = json.loads(Path(f"{counts_at}.{rank}.json").read_text())
        print(rank, json.dumps(counts))
        all_reduce = {int(k): v for k, v in counts["all_reduce"].items()}
        syncs = {int(k): v for k, v in counts["sync"]["loop"].items()}
        assert {s: all_reduce.get(s, 0) for s in QUIET_STEPS} == dict.fromkeys(QUIET_STEPS, 1)
        assert {s: syncs.get(s, 0) for s in QUIET_STEPS} == dict.fromkeys(QUIET_STEPS, 0)
        assert all_reduce[LOGGING_STEP] == 2 and syncs[LOGGING_STEP] == 1
