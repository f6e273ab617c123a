"""The transformers backend: the reference the vLLM results are checked against, and a
fallback where vLLM is not installed."""
from __future__ import annotations

import torch

from .progress import generation_bar
from .spec import Generation, SamplingSpec, check_prompts
from .stops import cut_at_stop_string, eos_token_ids
from .topk import topk_from_logits

_DTYPES = {"auto": "auto", "float32": torch.float32, "float": torch.float32,
           "bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16}


class HfEngine:
    """model.generate on left-padded batches of `batch_size` prompts."""

    def __init__(self, model: str, *, max_model_len: int = 4096, dtype: str = "auto",
                 max_logprobs: int = 20, batch_size: int = 8, revision: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, revision=revision, dtype=_DTYPES[dtype]).eval()
        self.max_model_len = max_model_len
        self.max_logprobs = max_logprobs
        self.batch_size = batch_size
        self._eos_ids = eos_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else self._eos_ids[0]

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None,
                 progress: str | None = None) -> list[list[Generation]]:
        """Sampling draws from one generator per batch, seeded with the batch's first seed
        (`seeds`, or spec.seed + the batch's offset): reproducible for the same batching.
        `progress`: a bar of that label, advanced batch by batch."""
        check_prompts(prompts, spec, self.max_model_len, self.max_logprobs, seeds)
        results: list[list[Generation]] = []
        with generation_bar(progress, len(prompts), spec.n) as bar:
            for start in range(0, len(prompts), self.batch_size):
                seed = seeds[start] if seeds is not None else spec.seed + start
                batch = self._generate_batch(prompts[start:start + self.batch_size], spec, seed)
                results.extend(batch)
                bar.done(batch)
        return results

    def _generate_batch(self, prompts: list[list[int]], spec: SamplingSpec,
                        seed: int) -> list[list[Generation]]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt):] = torch.tensor(prompt)
            attention[row, width - len(prompt):] = 1
        samples = 1 if spec.greedy else spec.n
        stop_ids = eos_token_ids(self.tokenizer, self._eos_ids, spec.stop_token_ids)
        if not spec.greedy:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention,
                max_new_tokens=spec.max_new_tokens, min_new_tokens=0,
                do_sample=not spec.greedy, temperature=spec.temperature or None,
                top_p=spec.top_p, top_k=0, repetition_penalty=1.0, num_return_sequences=samples,
                eos_token_id=stop_ids, pad_token_id=self._pad_id,
                stop_strings=list(spec.stop) or None,
                tokenizer=self.tokenizer if spec.stop else None,
                return_dict_in_generate=True, output_logits=bool(spec.logprobs))
        generated = out.sequences[:, width:]
        # out.logits: one [rows, V] tensor per step, raw (before temperature/top-p processing).
        rows = [self._to_generation(generated[r], out.logits if spec.logprobs else None, r, spec,
                                    stop_ids) for r in range(generated.shape[0])]
        grouped = [rows[i * samples:(i + 1) * samples] for i in range(len(prompts))]
        if samples != spec.n:  # greedy: every sample is the same answer
            grouped = [[g] + [self._copy(g) for _ in range(spec.n - 1)] for g, in grouped]
        return grouped

    def _to_generation(self, tokens: torch.Tensor, step_logits: tuple | None, row: int,
                       spec: SamplingSpec, stop_ids: list[int]) -> Generation:
        ids = tokens.tolist()
        end, finish = len(ids), "length"
        hits = [i for i, t in enumerate(ids) if t in stop_ids]
        if hits:
            end, finish = hits[0] + 1, "stop"
        if spec.stop:
            found = self._first_stop_string_end(ids[:end], spec.stop)
            if found is not None:
                end, finish = found, "stop"
        ids = ids[:end]
        text, _ = cut_at_stop_string(self.tokenizer.decode(ids, skip_special_tokens=True), spec.stop)
        gen = Generation(token_ids=ids, finish_reason=finish, text=text)
        if step_logits is not None:  # this row's positions only: never [rows, steps, V] at once
            logits = torch.stack([step[row] for step in step_logits[:end]])
            gen.topk_ids, gen.topk_logprobs, gen.sampled_logprobs = topk_from_logits(
                logits, tokens[:end], spec.logprobs)
        return gen

    def _first_stop_string_end(self, ids: list[int], stops: tuple[str, ...]) -> int | None:
        """Shortest prefix length whose text holds a stop string (containment only grows
        with the prefix, so a binary search finds it)."""
        def holds(n: int) -> bool:
            return cut_at_stop_string(self.tokenizer.decode(ids[:n], skip_special_tokens=True),
                                      stops)[1]
        if not ids or not holds(len(ids)):
            return None
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if holds(mid) else (mid + 1, hi)
        return lo

    @staticmethod
    def _copy(g: Generation) -> Generation:
        return Generation(list(g.token_ids), g.finish_reason, g.text,
                          *(None if a is None else a.copy()
                            for a in (g.topk_ids, g.topk_logprobs, g.sampled_logprobs)))

    def close(self) -> None:
        self.model = None
