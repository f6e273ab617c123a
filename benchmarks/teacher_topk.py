"""Real teacher top-k distributions for the cache benchmark, generated once and kept in an .npz.

The byte cost of an encoding depends on how peaked the teacher is and which ids it
proposes, so the benchmark needs a real code model's answers, not random numbers. The
teacher answers CodeAlpaca instructions greedily with transformers; at every generated
position we keep the top `k` ids and log-probs of the full-vocabulary log-softmax at T=1,
unrounded: the model runs in bfloat16 but its output layer in float32, so the logits carry
no bf16 rounding that would flatter a log-prob quantiser (vLLM's bf16 logits are coarser
than these). A later run with the same settings reuses the file.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class TeacherTopK:
    """Per example: prompt ids, response ids, top-k ids [n, k] and log-probs [n, k]."""

    source: dict  # model, examples, max_new_tokens, k, whether the model is a stand-in
    prompt_ids: list[np.ndarray]
    response_ids: list[np.ndarray]
    topk_ids: list[np.ndarray]
    topk_logprobs: list[np.ndarray]
    finish_reasons: list[str]

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.response_ids)

    def truncated(self, k: int) -> "TeacherTopK":
        """The same answers with only the top `k` entries per position."""
        return TeacherTopK({**self.source, "k": k}, self.prompt_ids, self.response_ids,
                           [a[:, :k] for a in self.topk_ids], [a[:, :k] for a in self.topk_logprobs],
                           self.finish_reasons)

    def save(self, path: Path) -> None:
        def flat(arrays):
            return np.concatenate(arrays) if arrays else np.zeros(0)

        np.savez_compressed(
            path, source=json.dumps(self.source),
            prompt_lengths=[len(p) for p in self.prompt_ids], prompt_ids=flat(self.prompt_ids),
            response_lengths=[len(r) for r in self.response_ids], response_ids=flat(self.response_ids),
            topk_ids=flat(self.topk_ids), topk_logprobs=flat(self.topk_logprobs),
            finish_reasons=np.array(self.finish_reasons))

    @classmethod
    def load(cls, path: Path) -> "TeacherTopK":
        data = np.load(path)

        def split(values, lengths):
            return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []

        lengths = data["response_lengths"]
        return cls(json.loads(str(data["source"])), split(data["prompt_ids"], data["prompt_lengths"]),
                   split(data["response_ids"], lengths), split(data["topk_ids"], lengths),
                   split(data["topk_logprobs"], lengths), [str(r) for r in data["finish_reasons"]])


def code_alpaca_messages(dataset: Path, count: int) -> list[list[dict]]:
    """The first `count` CodeAlpaca records as chat messages (instruction, then its input)."""
    records = json.loads(Path(dataset).read_text())[:count]
    messages = []
    for rec in records:
        text = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
        messages.append([{"role": "user", "content": text}])
    return messages


def generate_teacher_topk(model: Path, dataset: Path, *, examples: int, max_new_tokens: int,
                          k: int = 50, batch_size: int = 8, stand_in: bool = False) -> TeacherTopK:
    """Run `model` greedily over `examples` CodeAlpaca instructions and keep its top-k."""
    import torch

    from inference import SamplingSpec, render_prompt
    from inference.hf_engine import HfEngine

    start = time.perf_counter()
    engine = HfEngine(str(model), dtype="bfloat16", max_logprobs=k, batch_size=batch_size)
    _float32_output_layer(engine.model)
    prompts = [render_prompt(engine.tokenizer, m) for m in code_alpaca_messages(dataset, examples)]
    spec = SamplingSpec(max_new_tokens=max_new_tokens, temperature=0.0, logprobs=k)
    with torch.inference_mode():
        answers = [samples[0] for samples in engine.generate(prompts, spec)]
    engine.close()
    seconds = time.perf_counter() - start
    tokens = sum(len(a.token_ids) for a in answers)
    source = {"model": str(model), "stand_in": stand_in, "dataset": str(dataset), "examples": examples,
              "max_new_tokens": max_new_tokens, "k": k, "decoding": "greedy, transformers, bf16 body + float32 output layer",
              "generated_tokens": tokens, "generation_seconds": round(seconds, 1)}
    return TeacherTopK(source, [np.asarray(p, np.int32) for p in prompts],
                       [np.asarray(a.token_ids, np.int32) for a in answers],
                       [a.topk_ids.astype(np.int32) for a in answers],
                       [a.topk_logprobs.astype(np.float32) for a in answers],
                       [a.finish_reason for a in answers])


def _float32_output_layer(model) -> None:
    """Compute the logits in float32 from the bf16 hidden state (an untied head only)."""
    if model.config.tie_word_embeddings:
        return
    head = model.get_output_embeddings().float()
    head.register_forward_pre_hook(lambda module, args: (args[0].float(),))


def tiny_stand_in_model(work_dir: Path) -> Path:
    """The tests' tiny random teacher (vocab ~384): only for a smoke run without the real one."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import build_tiny_pair

    return build_tiny_pair(work_dir)[0]
