"""Kill -9 a training run twice, rerun the same command: same final weights as a run never killed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cache_schema import tokenizer_fingerprint
from distill_cache import random_cache
from stages.distill.data import DataPosition

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("step_time_s", "data_wait_s", "eval_time_s")


def command(options: dict) -> list[str]:
    code = "import json, sys; from stages.distill import DistillConfig, train; train(DistillConfig.from_options(json.loads(sys.argv[1])))"
    return [sys.executable, "-c", code, json.dumps(options)]


def run_to_end(options: dict) -> None:
    done = subprocess.run(command(options), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def run_and_kill(options: dict, after_step: int) -> None:
    """Start the run in its own process group; SIGKILL the group once checkpoint `after_step` exists."""
    marker = Path(options["run_dir"]) / "checkpoints" / f"step-{after_step:07d}"
    proc = subprocess.Popen(command(options), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its DataLoader worker
        proc.wait()
    assert marker.exists() or any(marker.parent.glob("step-*")), "the run never wrote the checkpoint"
    assert not (Path(options["run_dir"]) / "final").exists(), "the run finished before it could be killed"


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def final_weights(run_dir: Path) -> dict:
    return load_file(run_dir / "final" / "model.safetensors")


def train_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


@pytest.mark.slow
@pytest.mark.parametrize("mixed", [False, True], ids=["one-cache", "two-caches"])
def test_a_run_killed_twice_ends_with_the_weights_of_an_uninterrupted_run(tiny_student, tmp_path, mixed):
    """Mixed: a second cache (other k, other size) drawn with weight 2 against 1, so the
    checkpoint must carry both caches' stream positions and the sampler's pool."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    fingerprint = tokenizer_fingerprint(tokenizer)
    cache = random_cache(tmp_path / "cache", examples=24, rows_per_shard=5, vocab=len(tokenizer),
                         fingerprint=fingerprint, response_len=(2, 30))
    caches, weights = [str(cache)], []
    if mixed:
        other = random_cache(tmp_path / "other", examples=15, rows_per_shard=5, vocab=len(tokenizer), k=6, seed=1,
                             fingerprint=fingerprint, response_len=(2, 20), prefix="other")
        caches, weights = [str(cache), str(other)], [1.0, 2.0]
    base = dict(caches=caches, cache_weights=weights, student=str(tiny_student), max_steps=14, lr=2e-3,
                warmup_steps=3, grad_accum=2, precision="bf16", deterministic=True, threads=1, num_workers=1,
                max_batch_tokens=96, max_seq_len=96, max_batch_examples=3, shuffle_buffer=6, sort_pool=4,
                eval_fraction=0.2, eval_every=3, checkpoint_every=1, keep_checkpoints=2, progress=False,
                plots=False, final_dtype="float32")
    straight = tmp_path / "straight"
    run_to_end({**base, "run_dir": str(straight)})

    killed = tmp_path / "killed"
    options = {**base, "run_dir": str(killed)}
    run_and_kill(options, after_step=3)
    run_and_kill(options, after_step=9)
    run_to_end(options)

    expected, found = final_weights(straight), final_weights(killed)
    assert expected.keys() == found.keys()
    for name in expected:
        assert torch.equal(expected[name], found[name]), name
    assert train_metrics(killed) == train_metrics(straight)
    states = [torch.load(run / "checkpoints" / "step-0000014" / "trainer_state.pt", weights_only=False)
              for run in (straight, killed)]
    assert states[1]["data"] == states[0]["data"]
    epochs = DataPosition.from_dict(states[1]["data"][0]).epochs(len(caches))
    assert epochs[-1] >= 1  # crossed epochs (the second cache, drawn twice as often, more than once)
    assert torch.equal(states[1]["rng"][0]["torch"], states[0]["rng"][0]["torch"])  # RNG continued too
    if mixed:
        evals = [r for r in map(json.loads, (killed / "metrics.jsonl").read_text().splitlines())
                 if r["split"] == "eval"]
        assert all("eval_fkl/cache" in r and "eval_fkl/other" in r for r in evals)


def test_a_save_that_fills_the_disk_fails_in_one_line_and_keeps_the_previous_copy(tmp_path, monkeypatch):
    from stages.distill import checkpoint
    from stages.distill.errors import SaveError

    final = tmp_path / "final"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"previous weights")

    def fill_the_disk(model, state_dict, tokenizer, out, dtype=None):
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_hf_folder", fill_the_disk)
    with pytest.raises(SaveError, match=r"could not write .*final .*No space left on device.*GiB free") as caught:
        checkpoint.save_final(final, None, {}, None, torch.bfloat16)
    assert "\n" not in str(caught.value)
    assert (final / "model.safetensors").read_bytes() == b"previous weights"
    assert not list(tmp_path.glob(".tmp-*")), "the half-written copy was left behind"
