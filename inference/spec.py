"""The engine-independent interface: what callers ask for and what they get back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


class InferenceError(ValueError):
    """A request the engines cannot serve (bad option, prompt too long, ...)."""


@dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    n: int = 1  # samples per prompt
    logprobs: int = 0  # top-k log-probs per generated token (0 = none)
    stop: tuple[str, ...] = ()  # stop strings; the stop text is not in `text`
    stop_token_ids: tuple[int, ...] = ()  # extra stop ids besides the tokenizer's eos
    # Generate exactly max_new_tokens: no stop on eos, stop ids or stop strings (a decode-speed
    # measurement at a fixed length; the answers are not meant to be read).
    ignore_eos: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise InferenceError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise InferenceError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InferenceError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise InferenceError(f"n must be >= 1, got {self.n}")
        if self.logprobs < 0:
            raise InferenceError(f"logprobs must be >= 0, got {self.logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Generation:
    token_ids: list[int]  # includes the eos/end-of-turn token when it stopped on it
    finish_reason: str  # "stop" or "length"
    text: str  # decoded, special tokens skipped, stop string removed
    topk_ids: np.ndarray | None = None  # [len(token_ids), k] int32, sorted by prob desc
    topk_logprobs: np.ndarray | None = None  # [len(token_ids), k] float32, raw log-softmax, T=1
    sampled_logprobs: np.ndarray | None = None  # [len(token_ids)] float32


@dataclass
class Scores:
    """The model's distribution at every position of a given response (nothing sampled)."""

    topk_ids: np.ndarray  # [len(response), k] int32, sorted by prob desc
    topk_logprobs: np.ndarray  # [len(response), k] float32, raw log-softmax, T=1
    token_logprobs: np.ndarray  # [len(response)] float32: log-prob of each given response token


class Engine(Protocol):
    tokenizer: object  # a transformers PreTrainedTokenizerBase
    max_model_len: int

    def generate(self, prompts: list[list[int]], spec: SamplingSpec,
                 seeds: list[int] | None = None,
                 progress: str | None = None,
                 on_done: Callable[[int, list[Generation]], None] | None = None) -> list[list[Generation]]:
        """One list of spec.n Generations per prompt, in prompt order. `seeds` (optional,
        one per prompt) pins each prompt's sampling independently of the batch. `progress`:
        the label of a progress bar on stderr (answers done, generated tokens/s); None: quiet.
        `on_done(i, generations)`: called as soon as prompt i's answers are all finished, so a
        caller can save them before the call returns (a long call stopped midway keeps them)."""
        ...

    def score(self, prompts: list[list[int]], responses: list[list[int]], k: int) -> list[Scores]:
        """Top-k at each response position: entry j is the distribution that predicts
        response token j after prompt + response[:j] (one prefill, no sampling)."""
        ...

    def close(self) -> None: ...


def check_prompts(prompts: list[list[int]], spec: SamplingSpec, max_model_len: int,
                  max_logprobs: int, seeds: list[int] | None = None) -> None:
    """Refuse, before any work starts, what would fail mid-batch in an engine."""
    if seeds is not None and len(seeds) != len(prompts):
        raise InferenceError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    if spec.logprobs > max_logprobs:
        raise InferenceError(
            f"logprobs={spec.logprobs} exceeds the engine's max_logprobs={max_logprobs}; "
            "load the engine with max_logprobs >= k")
    limit = max_model_len - spec.max_new_tokens
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise InferenceError(f"prompt {i} is empty")
        if len(prompt) > limit:
            raise InferenceError(
                f"prompt {i} has {len(prompt)} tokens, over max_model_len - max_new_tokens "
                f"= {max_model_len} - {spec.max_new_tokens} = {limit}; filter it out first")


def check_scoring(prompts: list[list[int]], responses: list[list[int]], k: int,
                  max_model_len: int, max_logprobs: int) -> None:
    """Refuse what an engine cannot score. prompt + response must leave one position free:
    vLLM scores a prompt only while generating at least one token after it."""
    if len(prompts) != len(responses):
        raise InferenceError(f"got {len(responses)} responses for {len(prompts)} prompts")
    if not 1 <= k <= max_logprobs:
        raise InferenceError(f"k={k} must be in 1..max_logprobs={max_logprobs}; "
                             "load the engine with max_logprobs >= k")
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        if not prompt or not response:
            raise InferenceError(f"pair {i}: empty {'prompt' if not prompt else 'response'}")
        if len(prompt) + len(response) > max_model_len - 1:
            raise InferenceError(
                f"pair {i}: {len(prompt)} prompt + {len(response)} response tokens exceed "
                f"max_model_len - 1 = {max_model_len - 1}; filter it out first")
