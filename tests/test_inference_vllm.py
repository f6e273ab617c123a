"""vLLM-CPU engine on the tiny model, checked against the HF engine (slow: engine start)."""
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from inference import InferenceError, SamplingSpec, load_engine, render_prompt  # noqa: E402

pytestmark = pytest.mark.slow

# Both engines in float32 on the tiny model: measured max |diff| of top-k log-probs 3.3e-6.
LOGPROB_TOL = 1e-3
NEAR_TIE = 1e-3
INSTRUCTIONS = ["Write a Python function that reverses a string.", "Create a list of squares",
                "def add(a, b):", "class Stack", "for i in range(10): print(i)",
                "You are an expert programmer.", "import os\nimport sys", "x = [n for n in"]


@pytest.fixture(scope="module")
def engines(tiny_teacher):
    vllm = load_engine(str(tiny_teacher), backend="vllm", max_model_len=256, dtype="float32",
                       max_logprobs=8)
    hf = load_engine(str(tiny_teacher), backend="hf", max_model_len=256, dtype="float32",
                     max_logprobs=8, batch_size=4)
    yield vllm, hf
    vllm.close()
    hf.close()


@pytest.fixture(scope="module")
def prompts(engines):
    tok = engines[1].tokenizer
    return [render_prompt(tok, [{"role": "user", "content": s}]) for s in INSTRUCTIONS]


def test_vllm_and_hf_agree_on_greedy_tokens_and_topk(engines, prompts):
    vllm, hf = engines
    spec = SamplingSpec(max_new_tokens=32, logprobs=8)
    worst = 0.0
    for (v,), (h,) in zip(vllm.generate(prompts, spec), hf.generate(prompts, spec)):
        n = min(len(v.token_ids), len(h.token_ids))
        same = next((j for j in range(n) if v.token_ids[j] != h.token_ids[j]), n)
        if same < n:  # a diverging greedy path is only acceptable at a near-tie
            assert h.topk_logprobs[same, 0] - h.topk_logprobs[same, 1] < NEAR_TIE
        else:
            assert len(v.token_ids) == len(h.token_ids) and v.finish_reason == h.finish_reason
        upto = min(same + 1, n)
        diff = np.abs(v.topk_logprobs[:upto] - h.topk_logprobs[:upto]).max()
        np.testing.assert_allclose(v.sampled_logprobs[:upto], h.sampled_logprobs[:upto],
                                   atol=LOGPROB_TOL)
        worst = max(worst, float(diff))
    assert worst < LOGPROB_TOL, worst


def test_vllm_sampled_token_outside_topk_keeps_its_logprob(engines, prompts):
    vllm, _ = engines
    spec = SamplingSpec(max_new_tokens=16, temperature=1.5, seed=3, logprobs=2)
    gens = [g for x in vllm.generate(prompts, spec) for g in x]
    outside = 0
    for g in gens:
        assert g.topk_ids.shape == (len(g.token_ids), 2)
        assert np.all(np.diff(g.topk_logprobs, axis=1) <= 0)
        in_top = (g.topk_ids == np.asarray(g.token_ids)[:, None]).any(1)
        outside += int((~in_top).sum())
        assert np.all(g.sampled_logprobs[~in_top] <= g.topk_logprobs[~in_top, 1] + 1e-6)
    assert outside > 0  # flat tiny-model distributions: many samples fall outside the top 2


def test_vllm_sampling_is_seeded_with_n_samples(engines, prompts):
    vllm, _ = engines
    spec = SamplingSpec(max_new_tokens=8, temperature=1.0, n=2, seed=11)
    a, b = vllm.generate(prompts[:2], spec), vllm.generate(prompts[:2], spec)
    assert [[g.token_ids for g in x] for x in a] == [[g.token_ids for g in x] for x in b]
    assert [len(x) for x in a] == [2, 2] and a[0][0].token_ids != a[0][1].token_ids


def test_vllm_stops_like_hf(engines, prompts):
    vllm, hf = engines
    free = vllm.generate(prompts[:1], SamplingSpec(max_new_tokens=10))[0][0]
    stop_id = free.token_ids[4]
    spec = SamplingSpec(max_new_tokens=10, stop_token_ids=(stop_id,))
    v, h = vllm.generate(prompts[:1], spec)[0][0], hf.generate(prompts[:1], spec)[0][0]
    assert v.token_ids == h.token_ids == free.token_ids[:free.token_ids.index(stop_id) + 1]
    assert v.finish_reason == h.finish_reason == "stop"
    stop = free.text.strip()[2:4]
    spec = SamplingSpec(max_new_tokens=10, stop=(stop,))
    v, h = vllm.generate(prompts[:1], spec)[0][0], hf.generate(prompts[:1], spec)[0][0]
    assert v.finish_reason == h.finish_reason == "stop"
    assert v.text == h.text and stop not in v.text


def test_vllm_ignore_eos_generates_exactly_max_new_tokens(engines, prompts):
    """vLLM's own ignore_eos skips only the eos: the engine must drop stop ids and strings too."""
    vllm, hf = engines
    free = vllm.generate(prompts, SamplingSpec(max_new_tokens=6))
    firsts = tuple({g.token_ids[0] for (g,) in free})
    stop_text = tuple({g.text[:1] for (g,) in free if g.text})
    stopping = dict(max_new_tokens=12, stop_token_ids=(*firsts, vllm.tokenizer.eos_token_id),
                    stop=stop_text)
    early = vllm.generate(prompts, SamplingSpec(**stopping))
    assert all(len(g.token_ids) < 12 and g.finish_reason == "stop" for (g,) in early)
    spec = SamplingSpec(**stopping, ignore_eos=True)
    for out in (vllm.generate(prompts, spec), hf.generate(prompts, spec)):
        assert [len(g.token_ids) for (g,) in out] == [12] * len(prompts)
        assert all(g.finish_reason == "length" for (g,) in out)


def test_vllm_refuses_overlong_prompt_before_generating(engines, prompts):
    vllm, _ = engines
    with pytest.raises(InferenceError, match="prompt 1 has 250 tokens"):
        vllm.generate([prompts[0], [5] * 250], SamplingSpec(max_new_tokens=8))
    assert len(vllm.generate(prompts[:1], SamplingSpec(max_new_tokens=2))[0][0].token_ids) == 2


def test_vllm_per_prompt_seeds_do_not_depend_on_the_batch(engines, prompts):
    vllm, _ = engines
    spec = SamplingSpec(max_new_tokens=8, temperature=1.0, n=2, seed=0)
    together = vllm.generate(prompts[:3], spec, seeds=[10, 20, 30])
    alone = vllm.generate(prompts[1:2], spec, seeds=[20])
    assert [g.token_ids for g in together[1]] == [g.token_ids for g in alone[0]]
    shared = vllm.generate(prompts[:2], spec)  # one seed for all: still reproducible
    assert [g.token_ids for g in shared[0]] == [g.token_ids for g in vllm.generate(prompts[:1], spec)[0]]
    with pytest.raises(InferenceError, match="2 seeds for 3 prompts"):
        vllm.generate(prompts[:3], spec, seeds=[1, 2])


def test_vllm_progress_bar_is_driven(engines, prompts, capsys):
    vllm, _ = engines
    vllm.generate(prompts[:3], SamplingSpec(max_new_tokens=4, temperature=1.0, n=2),
                  progress="tiny answers")
    err = capsys.readouterr().err
    assert "tiny answers" in err and "6/6" in err and "tok/s" in err
    assert "Rendering prompts" not in err and "Adding requests" not in err


def test_vllm_hands_on_each_prompt_as_it_finishes_and_a_stopped_call_leaves_it_idle(engines, prompts):
    vllm, _ = engines
    spec = SamplingSpec(max_new_tokens=12, temperature=1.0, n=3, seed=5)
    seen = {}
    results = vllm.generate(prompts, spec, on_done=lambda i, gens: seen.setdefault(i, gens))
    assert sorted(seen) == list(range(len(prompts))) and all(seen[i] is results[i] for i in seen)
    assert all(len(gens) == 3 for gens in results)

    class Stop(Exception):
        pass

    def stop_after_two(i, gens):
        if len(handed) == 2:
            raise Stop
        handed.append(i)

    handed = []
    with pytest.raises(Stop):
        vllm.generate(prompts, spec, on_done=stop_after_two)
    assert len(handed) == 2 and not vllm._llm.llm_engine.has_unfinished_requests()  # the rest aborted
    again = vllm.generate(prompts, spec)  # the engine serves the next call whole, same seeded answers
    assert [[g.token_ids for g in gens] for gens in again] == [[g.token_ids for g in gens] for gens in results]


def test_vllm_seeded_sampling_survives_prompts_that_fill_many_steps(engines, prompts):
    """vLLM-CPU rewound a seeded request's generator when chunked prefill cut its prompt and
    died ("CPU Generator does not use offset"; seen on 320 real rollout prompts): more prompt
    tokens than one step holds, sampled with per-prompt seeds, must come back whole."""
    vllm, _ = engines
    long_prompts = [(p * 40)[:200] for p in prompts] * 8  # 64 prompts, 12,800 prompt tokens
    spec = SamplingSpec(max_new_tokens=4, temperature=1.0, seed=0)
    seeds = list(range(len(long_prompts)))
    out = vllm.generate(long_prompts, spec, seeds=seeds)
    assert len(out) == 64 and all(len(samples[0].token_ids) >= 1 for samples in out)
    alone = vllm.generate(long_prompts[63:], spec, seeds=[63])
    assert out[63][0].token_ids == alone[0][0].token_ids


def test_vllm_runs_eager_on_a_cpu_in_float32(engines):
    """A compiled float32 CPU engine compiles and warms up at every start for no decode speed
    (benchmarks/bench_engine.py): such engines run eager unless asked otherwise."""
    config = engines[0]._llm.llm_engine.vllm_config
    assert config.model_config.enforce_eager is True


def test_only_float32_cpu_engines_default_to_eager():
    """Where the CPU computes bf16 (dtype `auto` resolves to the model's bf16) the compiled graph
    decodes faster, so the default there is compiled."""
    from inference.vllm_engine import eager_on_cpu

    assert eager_on_cpu("float32")
    assert not eager_on_cpu("auto") and not eager_on_cpu("bfloat16")
