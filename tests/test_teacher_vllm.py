"""Stage one with the vLLM-CPU backend on the tiny model (slow: each run starts an engine).

A run is killed with SIGKILL after its first shard, rerun, and must end with every example
exactly once; its cache must match one built by the HF backend from the same rows.
"""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cache_schema import CacheReader, verify_cache
from stages.teacher import TeacherCacheConfig, build_teacher_cache
from teacher_data import GOOD, SKIPPED, check_alignment, write_rows

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# Engines differ by ~3e-6 (test_inference_vllm.py); the cache rounds log-probs to its
# encoding's grid, so a value next to a rounding boundary may land one grid step apart.
NEAR_TIE = 1e-3
RUN = """
import json, sys
from stages.teacher import TeacherCacheConfig, build_teacher_cache
if __name__ == "__main__":
    summary = build_teacher_cache(TeacherCacheConfig.from_options(json.loads(sys.argv[1])))
    print("SUMMARY " + json.dumps(summary))
"""


def options(tiny_teacher, data, out_dir, **overrides):
    base = dict(model=str(tiny_teacher), dataset=str(data), out_dir=str(out_dir), backend="vllm",
                k=5, max_new_tokens=24, max_model_len=512, rows_per_shard=2, chunk_size=2,
                progress=False, dtype="float32")
    return {**base, **overrides}


def start(opts, log_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    log = open(log_path, "w")
    # A session of its own, so SIGKILL reaches the vLLM engine processes too.
    return subprocess.Popen([sys.executable, "-c", RUN, json.dumps(opts)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_teacher, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_teacher")
    data = root / "instr.jsonl"
    good = write_rows(data)
    out = root / "cache"
    opts = options(tiny_teacher, data, out)
    proc = start(opts, root / "run1.log")
    first_shard = out / "shards" / "w000-00000.parquet"
    deadline = time.time() + 900  # engine start: ~20 s idle, minutes on a loaded machine
    while not first_shard.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first_shard.exists(), (root / "run1.log").read_text()[-3000:]
    killed_at = len(list((out / "shards").glob("*.parquet")))
    finished_first = (out / "manifest.json").exists()
    proc = start(opts, root / "run2.log")
    assert proc.wait(timeout=1800) == 0, (root / "run2.log").read_text()[-3000:]
    line = [x for x in (root / "run2.log").read_text().splitlines() if x.startswith("SUMMARY ")]
    return dict(out=out, data=data, good=good, summary=json.loads(line[-1][8:]),
                killed_at=killed_at, finished_first=finished_first)


def test_killed_run_resumes_with_every_example_once(killed_and_resumed):
    run = killed_and_resumed
    assert not run["finished_first"] and run["killed_at"] < len(GOOD) / 2
    summary = run["summary"]
    assert summary["examples_already_cached"] >= 2
    assert summary["examples_already_cached"] + summary["examples_written"] == len(GOOD)
    assert summary["skipped"] == SKIPPED
    report = verify_cache(run["out"])
    assert report.rows == len(GOOD)
    ids = Counter(r.example_id for r in CacheReader(run["out"]).iter_examples())
    assert ids == Counter(f"instr:{i}:0" for i in run["good"])


def test_vllm_cache_matches_hf_cache(killed_and_resumed, tiny_teacher):
    run = killed_and_resumed
    hf_out = run["out"].parent / "hf_cache"
    build_teacher_cache(TeacherCacheConfig.from_options(options(tiny_teacher, run["data"], hf_out,
                                                                backend="hf")))
    hf = {r.example_id: r for r in CacheReader(hf_out).iter_examples()}
    grid = getattr(CacheReader(hf_out).encoding, "grid", None)
    for v in CacheReader(run["out"]).iter_examples():
        h = hf[v.example_id]
        assert v.prompt_ids.tolist() == h.prompt_ids.tolist()
        n = min(v.num_tokens, h.num_tokens)
        same = next((j for j in range(n) if v.response_ids[j] != h.response_ids[j]), n)
        upto = min(same + 1, n)
        lowest = float(h.topk_logprobs[:upto].min())
        tolerance = (2 * grid.max_error(lowest) if grid is not None else 4e-3) + 1e-4
        if same < n:  # greedy paths may part only at a near-tie (as rounded by the cache)
            assert h.topk_logprobs[same, 0] - h.topk_logprobs[same, 1] < NEAR_TIE + tolerance
        else:
            assert v.num_tokens == h.num_tokens and v.finish_reason == h.finish_reason
        np.testing.assert_allclose(v.topk_logprobs[:upto], h.topk_logprobs[:upto], atol=tolerance)
        np.testing.assert_allclose(v.topk_mass[:upto], h.topk_mass[:upto], atol=1e-4)


def test_vllm_cache_is_aligned_with_the_teachers_forward_pass(killed_and_resumed, tiny_teacher):
    run = killed_and_resumed
    assert check_alignment(run["out"], tiny_teacher, run["good"]) == len(GOOD)
