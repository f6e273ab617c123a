"""The transformers backend: the reference the vLLM results are checked against, and a
fallback where vLLM is not installed."""
from __future__ import annotations

from typing import Callable

import torch

from .progress import generation_bar
from .spec import Generation, SamplingSpec, Scores, check_prompts, check_scoring
from .answer_text import cut_at_stop_string
from .stops import eos_token_ids
from .topk import topk_from_logits

_DTYPES = {"auto": "auto", "float32": torch.float32, "float": torch.float32,
           "bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16}


class HfEngine:
    """model.generate on left-padded batches of `batch_size` prompts."""

    def __init__(self, model: str, *, max_model_len: int = 4096, dtype: str = "auto",
                 max_logprobs: int = 0, batch_size: int = 8, revision: str | None = None):
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
                 progress: str | None = None,
                 on_done: Callable[[int, list[Generation]], None] | None = None) -> list[list[Generation]]:
        """Sampling draws from one generator per batch, seeded with the batch's first seed
        (`seeds`, or spec.seed + the batch's offset): reproducible for the same batching.
        `progress`: a bar of that label, advanced batch by batch; `on_done`: each prompt of a
        batch once the batch is done (see Engine.generate)."""
        check_prompts(prompts, spec, self.max_model_len, self.max_logprobs, seeds)
        results: list[list[Generation]] = []
        with generation_bar(progress, len(prompts), spec.n) as bar:
            for start in range(0, len(prompts), self.batch_size):
                seed = seeds[start] if seeds is not None else spec.seed + start
                batch = self._generate_batch(prompts[start:start + self.batch_size], spec, seed)
                results.extend(batch)
                bar.done(batch)
                if on_done is not None:
                    for offset, generations in enumerate(batch):
                        on_done(start + offset, generations)
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
        # ignore_eos: min_new_tokens masks every stop id until the limit, and no stop string
        # is looked for, so each answer is exactly max_new_tokens long.
        stops = () if spec.ignore_eos else spec.stop
        if not spec.greedy:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention,
                max_new_tokens=spec.max_new_tokens,
                min_new_tokens=spec.max_new_tokens if spec.ignore_eos else 0,
                do_sample=not spec.greedy, temperature=spec.temperature or None,
                top_p=spec.top_p, top_k=0, repetition_penalty=1.0, num_return_sequences=samples,
                eos_token_id=stop_ids, pad_token_id=self._pad_id,
                stop_strings=list(stops) or None,
                tokenizer=self.tokenizer if stops else None,
                return_dict_in_generate=True, output_logits=bool(spec.logprobs))
        generated = out.sequences[:, width:]
        # out.logits: one [rows, V] tensor per step, raw (before temperature/top-p processing).
        rows = [self._to_generation(generated[r], out.logits if spec.logprobs else None, r, spec,
                                    [] if spec.ignore_eos else stop_ids)
                for r in range(generated.shape[0])]
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
        if spec.stop and not spec.ignore_eos:
            found = self._first_stop_string_end(ids[:end], spec.stop)
            if found is not None:
                end, finish = found, "stop"
        ids = ids[:end]
        text, _ = cut_at_stop_string(self.tokenizer.decode(ids, skip_special_tokens=True),
                                     () if spec.ignore_eos else spec.stop)
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

    def score(self, prompts: list[list[int]], responses: list[list[int]], k: int) -> list[Scores]:
        """One forward pass per batch of `batch_size` pairs, batched by similar length."""
        check_scoring(prompts, responses, k, self.max_model_len, self.max_logprobs)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        results: list[Scores | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            scored = self._score_batch([prompts[i] for i in batch], [responses[i] for i in batch], k)
            for i, scores in zip(batch, scored):
                results[i] = scores
        return results

    def _score_batch(self, prompts: list[list[int]], responses: list[list[int]],
                     k: int) -> list[Scores]:
        """Left-padded (positions counted from each row's first real token, as generate does)
        so every response ends at the last column: only the last max(len(response)) + 1
        columns of logits are needed, never [rows, width, V]."""
        seqs = [list(p) + list(r) for p, r in zip(prompts, responses)]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            input_ids[row, width - len(seq):] = torch.tensor(seq)
            attention[row, width - len(seq):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        keep = max(len(r) for r in responses) + 1
        with torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=attention,
                                position_ids=positions, logits_to_keep=keep).logits
        scored = []
        for row, response in enumerate(responses):
            n = len(response)
            # Column width-n+j holds response token j; the logits one column left predict it.
            ids, lps, token_lps = topk_from_logits(logits[row, keep - 1 - n:keep - 1],
                                                   torch.tensor(response), k)
            scored.append(Scores(ids, lps, token_lps))
        return scored

    @staticmethod
    def _copy(g: Generation) -> Generation:
        return Generation(list(g.token_ids), g.finish_reason, g.text,
                          *(None if a is None else a.copy()
                            for a in (g.topk_ids, g.topk_logprobs, g.sampled_logprobs)))

    def close(self) -> None:
        self.model = None
