"""Fast tests of the inference package: the HF engine on the tiny model and the helpers."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from inference import InferenceError, SamplingSpec, load_engine, render_prompt  # noqa: E402
from inference.answer_text import cut_at_stop_string  # noqa: E402
from inference.cpu_env import apply_cpu_defaults  # noqa: E402
from inference.stops import eos_token_ids  # noqa: E402
from inference.topk import topk_from_logits, topk_from_vllm_flat  # noqa: E402

INSTRUCTIONS = ["Write a Python function that reverses a string.", "Create a list of squares",
                "def add(a, b):", "class Stack"]


@pytest.fixture(scope="module")
def hf_engine(tiny_teacher):
    engine = load_engine(str(tiny_teacher), backend="hf", max_model_len=256, dtype="float32",
                         batch_size=3, max_logprobs=20)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def prompts(hf_engine):
    return [render_prompt(hf_engine.tokenizer, [{"role": "user", "content": s}])
            for s in INSTRUCTIONS]


def test_render_prompt_uses_chat_template(hf_engine):
    ids = render_prompt(hf_engine.tokenizer, [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "def add(a, b):"}])
    text = hf_engine.tokenizer.decode(ids)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                    "def add(a, b):<|im_end|>\n<|im_start|>assistant\n")
    assert all(isinstance(i, int) for i in ids)


def test_render_prompt_without_template_joins_contents(hf_engine):
    tok = hf_engine.tokenizer
    saved, tok.chat_template = tok.chat_template, None
    try:
        ids = render_prompt(tok, [{"role": "system", "content": "A"}, {"role": "user", "content": "B"}])
    finally:
        tok.chat_template = saved
    assert tok.decode(ids) == "A\n\nB"


def test_greedy_topk_is_raw_log_softmax_sorted(hf_engine, prompts):
    spec = SamplingSpec(max_new_tokens=6, logprobs=5)
    gens = hf_engine.generate(prompts, spec)
    assert [len(g) for g in gens] == [1] * len(prompts)
    for prompt, (gen,) in zip(prompts, gens):
        n = len(gen.token_ids)
        assert gen.topk_ids.shape == (n, 5) and gen.topk_ids.dtype == np.int32
        assert gen.topk_logprobs.dtype == np.float32 and gen.sampled_logprobs.shape == (n,)
        assert np.all(np.diff(gen.topk_logprobs, axis=1) <= 0)
        # Greedy: the generated token is the top-1 and its log-prob is the sampled one.
        assert gen.token_ids == gen.topk_ids[:, 0].tolist()
        np.testing.assert_allclose(gen.sampled_logprobs, gen.topk_logprobs[:, 0], atol=1e-6)
        # Recompute with one forward pass over prompt + response.
        with torch.no_grad():
            logits = hf_engine.model(torch.tensor([prompt + gen.token_ids])).logits[0]
        ref = torch.log_softmax(logits[len(prompt) - 1:len(prompt) - 1 + n].float(), -1)
        top = torch.topk(ref, 5)
        assert (top.indices.numpy() == gen.topk_ids).all()
        np.testing.assert_allclose(top.values.numpy(), gen.topk_logprobs, atol=1e-4)


def test_left_padding_does_not_change_results(hf_engine, prompts):
    spec = SamplingSpec(max_new_tokens=5, logprobs=3)
    batched = hf_engine.generate(prompts, spec)
    alone = [hf_engine.generate([p], spec)[0] for p in prompts]
    for a, b in zip(batched, alone):
        assert a[0].token_ids == b[0].token_ids
        np.testing.assert_allclose(a[0].topk_logprobs, b[0].topk_logprobs, atol=1e-4)


def test_stop_token_is_kept_and_marks_stop(hf_engine, prompts):
    free = hf_engine.generate(prompts[:1], SamplingSpec(max_new_tokens=8))[0][0]
    assert free.finish_reason == "length" and len(free.token_ids) == 8
    stop_id = free.token_ids[3]
    first = free.token_ids.index(stop_id)
    cut = hf_engine.generate(prompts[:1], SamplingSpec(max_new_tokens=8, stop_token_ids=(stop_id,)))
    assert cut[0][0].token_ids == free.token_ids[:first + 1]
    assert cut[0][0].finish_reason == "stop"


def test_stop_string_is_cut_from_text(hf_engine, prompts):
    free = hf_engine.generate(prompts[:1], SamplingSpec(max_new_tokens=10))[0][0]
    stop = free.text.strip()[2:4]
    assert stop
    gen = hf_engine.generate(prompts[:1], SamplingSpec(max_new_tokens=10, stop=(stop,)))[0][0]
    assert gen.finish_reason == "stop" and stop not in gen.text
    assert free.text.startswith(gen.text) and len(gen.token_ids) < len(free.token_ids)
    assert gen.token_ids == free.token_ids[:len(gen.token_ids)]


def test_ignore_eos_generates_exactly_max_new_tokens(hf_engine, prompts):
    """A fixed-length decode (akd speed): stop ids, eos and stop strings all ignored."""
    free = hf_engine.generate(prompts, SamplingSpec(max_new_tokens=6))
    firsts = tuple({g.token_ids[0] for (g,) in free})  # every prompt's first token stops it
    stop_text = tuple({g.text[:1] for (g,) in free if g.text})
    stopping = dict(max_new_tokens=12, stop_token_ids=(*firsts, hf_engine.tokenizer.eos_token_id),
                    stop=stop_text)
    early = hf_engine.generate(prompts, SamplingSpec(**stopping))
    assert all(len(g.token_ids) < 12 and g.finish_reason == "stop" for (g,) in early)
    fixed = hf_engine.generate(prompts, SamplingSpec(**stopping, ignore_eos=True))
    assert [len(g.token_ids) for (g,) in fixed] == [12] * len(prompts)
    assert all(g.finish_reason == "length" for (g,) in fixed)
    assert not any(t in stopping["stop_token_ids"] for (g,) in fixed for t in g.token_ids)


def test_sampling_is_seeded_and_gives_n_samples(hf_engine, prompts):
    spec = SamplingSpec(max_new_tokens=8, temperature=1.0, n=3, seed=7, logprobs=2)
    a = hf_engine.generate(prompts[:2], spec)
    b = hf_engine.generate(prompts[:2], spec)
    assert [len(x) for x in a] == [3, 3]
    assert [[g.token_ids for g in x] for x in a] == [[g.token_ids for g in x] for x in b]
    assert len({tuple(g.token_ids) for g in a[0]}) > 1
    greedy = hf_engine.generate(prompts[:1], SamplingSpec(max_new_tokens=4, n=2))[0]
    assert greedy[0].token_ids == greedy[1].token_ids and greedy[0] is not greedy[1]


def test_generation_progress_bar_counts_answers_and_tokens_per_s(hf_engine, prompts, capsys):
    spec = SamplingSpec(max_new_tokens=4, temperature=1.0, n=2)
    quiet = hf_engine.generate(prompts, spec)
    assert capsys.readouterr().err == ""  # no label, no bar
    loud = hf_engine.generate(prompts, spec, progress="tiny answers")
    err = capsys.readouterr().err
    assert [[g.token_ids for g in s] for s in loud] == [[g.token_ids for g in s] for s in quiet]
    # batch_size 3: the bar moves after each batch, by its prompts x n answers
    assert "tiny answers" in err and "6/8" in err and "8/8" in err and "tok/s" in err


def test_each_prompts_answers_are_handed_on_when_its_batch_is_done(hf_engine, prompts):
    spec = SamplingSpec(max_new_tokens=4, temperature=1.0, n=2)
    seen = []
    results = hf_engine.generate(prompts, spec, on_done=lambda i, gens: seen.append((i, len(seen), gens)))
    assert sorted(i for i, _, _ in seen) == list(range(len(prompts)))  # each prompt once
    assert all(gens is results[i] for i, _, gens in seen)
    assert [i for i, _, _ in seen] == [0, 1, 2, 3]  # batch of 3, then the last one


def test_engine_refuses_what_it_cannot_serve(hf_engine, prompts):
    with pytest.raises(InferenceError, match="max_logprobs"):
        hf_engine.generate(prompts, SamplingSpec(max_new_tokens=4, logprobs=21))
    with pytest.raises(InferenceError, match="prompt 1 has 300 tokens"):
        hf_engine.generate([prompts[0], [5] * 300], SamplingSpec(max_new_tokens=4))
    with pytest.raises(InferenceError, match="unknown backend"):
        load_engine("x", backend="onnx")
    with pytest.raises(InferenceError, match="top_p"):
        SamplingSpec(top_p=0)


def test_topk_from_logits_gathers_sampled_outside_topk():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 1.0, 0.0, -1.0]])
    ids, lps, sampled = topk_from_logits(logits, torch.tensor([0, 0]), 2)
    ref = torch.log_softmax(logits, -1)
    assert ids.tolist() == [[1, 3], [0, 1]]
    np.testing.assert_allclose(sampled, ref[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(lps[0], ref[0, [1, 3]].numpy(), rtol=1e-6)


def test_topk_from_vllm_flat_uses_entries_after_the_sampled_one():
    from vllm.logprobs import FlatLogprobs

    flat = FlatLogprobs()
    # Position 0: sampled token 9 outside the top 2; position 1: sampled = top-1 (repeated).
    flat.append_fast([9, 4, 5], [-5.0, -0.5, -1.5], iter([7, 1, 2]), [None] * 3)
    flat.append_fast([6, 6, 2], [-0.1, -0.1, -3.0], iter([1, 1, 2]), [None] * 3)
    ids, lps, sampled = topk_from_vllm_flat(flat, 2, 2)
    assert ids.tolist() == [[4, 5], [6, 2]] and ids.dtype == np.int32
    assert lps.tolist() == [[-0.5, -1.5], [pytest.approx(-0.1), -3.0]]
    assert sampled.tolist() == [-5.0, pytest.approx(-0.1)]
    with pytest.raises(RuntimeError, match="expected k\\+1 = 4"):
        topk_from_vllm_flat(flat, 3, 2)


def test_stop_helpers():
    class Tok:
        eos_token_id = 2
    assert eos_token_ids(Tok(), [2, 5], (7, 5)) == [2, 5, 7]
    assert eos_token_ids(Tok(), 3) == [2, 3]
    assert cut_at_stop_string("abc\ndef\nclass", ("\nclass", "\ndef")) == ("abc", True)
    assert cut_at_stop_string("abc", ("x",)) == ("abc", False)


def test_cpu_defaults_respect_user_settings():
    env = {"VLLM_CPU_KVCACHE_SPACE": "8"}
    changed = apply_cpu_defaults(env)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "8" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert "VLLM_CPU_KVCACHE_SPACE" not in changed
    # a slow CPU step is not a hung engine: vLLM's 300 s step and 600 s start limits are raised
    assert int(env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"]) >= 3600 and int(env["VLLM_ENGINE_READY_TIMEOUT_S"]) >= 3600
    mine = {"VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "60"}
    apply_cpu_defaults(mine)
    assert mine["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "60"
    # the allocator part: tests/test_allocator.py
