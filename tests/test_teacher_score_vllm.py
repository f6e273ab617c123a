"""Score mode and rollouts with the vLLM-CPU backend on the tiny model (slow: three engine
starts, each in its own process as in real use: rollout and scoring never share one).

The proof of alignment with vLLM's prompt log-probs: the teacher generates a greedy cache,
rolls out the same greedy answers, scores them, and the scored cache holds the generation-
time top-k (same ids, log-probs within 1e-3) at every position.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cache_schema import CacheReader, verify_cache
from stages.teacher import ResponsesFile
from teacher_data import write_rows

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TOL = 1e-3
RUN = """
import json, sys
from stages.teacher import RolloutConfig, TeacherCacheConfig, build_teacher_cache, run_rollout
if __name__ == "__main__":
    kind, options = sys.argv[1], json.loads(sys.argv[2])
    if kind == "rollout":
        summary = run_rollout(RolloutConfig.from_options(options))
    else:
        summary = build_teacher_cache(TeacherCacheConfig.from_options(options))
    print("SUMMARY " + json.dumps(summary))
"""


def run(kind, options, log_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    with open(log_path, "w") as log:
        code = subprocess.run([sys.executable, "-c", RUN, kind, json.dumps(options)], cwd=REPO,
                              env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800).returncode
    text = Path(log_path).read_text()
    assert code == 0, text[-3000:]
    return json.loads([x for x in text.splitlines() if x.startswith("SUMMARY ")][-1][8:])


@pytest.fixture(scope="module")
def caches(tiny_teacher, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_score")
    data = root / "instr.jsonl"
    write_rows(data)
    common = dict(model=str(tiny_teacher), dataset=str(data), backend="vllm", max_new_tokens=24,
                  max_model_len=512, rows_per_shard=3, chunk_size=4, progress=False,
                  dtype="float32", limit=12)
    cache = dict(common, k=5, teacher_template="plain", student_template="plain")
    gen = run("cache", dict(cache, out_dir=str(root / "gen")), root / "gen.log")
    rollout = run("rollout", dict(common, out=str(root / "rollout"), n=1, temperature=0.0,
                                  template="plain"), root / "rollout.log")
    scored = run("cache", dict(cache, out_dir=str(root / "scored"),
                               responses_from=str(root / "rollout")), root / "scored.log")
    return dict(root=root, gen=gen, rollout=rollout, scored=scored)


def test_vllm_scores_of_own_greedy_answers_reproduce_the_generation_cache(caches):
    root = caches["root"]
    assert caches["scored"]["mode"] == "score"
    assert caches["scored"]["examples_written"] == caches["gen"]["examples_written"] > 0
    gen = {r.example_id: r for r in CacheReader(root / "gen").iter_examples()}
    scored = {r.example_id: r for r in CacheReader(root / "scored").iter_examples()}
    assert scored.keys() == gen.keys()
    for eid, g in gen.items():
        s = scored[eid]
        assert s.prompt_ids.tolist() == g.prompt_ids.tolist()
        assert s.response_ids.tolist() == g.response_ids.tolist()  # greedy rollout = generation
        assert s.finish_reason == g.finish_reason
        np.testing.assert_array_equal(s.topk_ids, g.topk_ids)
        np.testing.assert_allclose(s.topk_logprobs, g.topk_logprobs, atol=TOL, rtol=0)
        np.testing.assert_allclose(s.topk_mass, g.topk_mass, atol=TOL, rtol=0)
    verify_cache(root / "scored")


def test_vllm_rollout_file_records_its_maker(caches):
    header = ResponsesFile(caches["root"] / "rollout").header
    assert header["complete"] and header["identity"]["model"]["backend"] == "vllm"
    assert header["identity"]["sampling"]["temperature"] == 0.0
    manifest = CacheReader(caches["root"] / "scored").manifest
    assert manifest.identity["responses"]["source"] == "rollout"
    assert manifest.identity["responses"]["tokenizer_fingerprint"] == manifest.identity["tokenizer_fingerprint"]
