"""Progress of a generation call, which takes minutes on a CPU: answers done, tokens/s."""
from __future__ import annotations

import contextlib

from tqdm import tqdm


class _GenerationBar:
    def __init__(self, bar: tqdm):
        self.bar, self.tokens = bar, 0

    def done(self, batch) -> None:
        """A finished batch: one list of Generations per prompt."""
        if self.bar.disable:
            return
        self.tokens += sum(len(g.token_ids) for samples in batch for g in samples)
        self.bar.update(sum(len(samples) for samples in batch))
        elapsed = self.bar.format_dict["elapsed"]
        if elapsed > 0:
            self.bar.set_postfix_str(f"{self.tokens / elapsed:.1f} tok/s")


@contextlib.contextmanager
def generation_bar(label: str | None, prompts: int, n: int):
    """A bar over the prompts x n answers of one call, on stderr; none when label is None."""
    with tqdm(total=prompts * n, desc=label, unit="answer", dynamic_ncols=True,
              disable=label is None) as bar:
        yield _GenerationBar(bar)


def vllm_bar_factory(label: str):
    """A `use_tqdm` callable for vLLM's LLM.generate (0.32): vLLM calls it as
    tqdm(total=requests, desc=, dynamic_ncols=, postfix=) for its bar of finished answers
    (its requests count each of a prompt's n samples), which it tags with input/output
    tokens/s; and as tqdm(prompts, desc=) over the prompts it renders, instant for token ids
    and left quiet here."""
    def make(iterable=None, **kwargs):
        if iterable is not None:
            return iterable
        return tqdm(**{**kwargs, "desc": label, "unit": "answer"})
    return make
