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
