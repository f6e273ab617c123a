"""Score mode of stage one: the teacher's top-k at every position of given responses.

The responses come from a dataset field (reference answers, tokenized with the teacher's
tokenizer and ended with its end-of-turn token, as a generated answer is) or from a
responses file of `akd rollout` (token ids as given; refused when made with another
tokenizer). The teacher conditions on its own prompt (teacher template) and the cache
stores the student prompt, exactly as in generation, so the cache reads the same.
Alignment (docs/design.md): the top-k stored at response position j is the distribution that
predicted response token j, i.e. the engine's prompt log-prob entry len(prompt) + j.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cache_schema import CachedExample, CacheWriter, tokenizer_fingerprint

from .chunks import example_id, open_engine, run_chunks
from .config import TeacherCacheConfig, TeacherConfigError
from .prompts import PromptPair
from .responses_file import ResponsesFile, ResponsesFileError
from .summary import RunStats

SKIP_EMPTY_RESPONSE = "empty_response"
SKIP_NON_STRING_RESPONSE = "non_string_response"
SKIP_RESPONSE_TOO_LONG = "response_too_long"
SKIP_PROMPT_MISSING = "prompt_missing_from_dataset"
SKIP_ROW_SKIPPED = "response_of_skipped_row"
_EXAMPLE_ID = re.compile(r"^(?P<tag>[^:]+):(?P<row>\d+):(?P<sample>\d+)$")


@dataclass(frozen=True)
class ScoreItem:
    example_id: str
    pair: PromptPair
    response_ids: list[int]
    finish_reason: str


class ResponseSource:
    """Where a score-mode run's responses come from; `identity` goes into the manifest."""

    def __init__(self, config: TeacherCacheConfig, dataset, dataset_tag: str, tokenizer):
        self.spec = config.responses_from
        self.tokenizer = tokenizer
        self.tag = dataset_tag
        path = Path(self.spec)
        if path.exists():
            self.file = ResponsesFile(path)
            made = self.file.identity
            if made.get("tokenizer_fingerprint") != tokenizer_fingerprint(tokenizer):
                raise ResponsesFileError(
                    f"--responses-from {path}: made by {made.get('model', {}).get('model')!r} with "
                    "another tokenizer than the teacher's (fingerprints differ); its token ids "
                    "would mean other text to this teacher")
            made_tag = made.get("dataset", {}).get("tag")
            if made_tag != dataset_tag:
                raise ResponsesFileError(
                    f"--responses-from {path}: its example ids are rows of dataset {made_tag!r}, "
                    f"this run's dataset is tagged {dataset_tag!r} (use that dataset or --dataset-tag)")
            self.field = None
            self.identity = {"source": "rollout", "path": str(path), "sha256": self.file.sha256,
                             **{key: made.get(key) for key in
                                ("model", "tokenizer_fingerprint", "template", "sampling", "dataset")}}
        elif self.spec in dataset.column_names:
            self.file = None
            self.field = self.spec
            self.end_id = tokenizer.eos_token_id
            if self.end_id is None:
                raise TeacherConfigError(f"--responses-from {self.spec}: the teacher's tokenizer "
                                         "has no eos token to end a response with")
            self.view = dataset.select_columns([self.field])
            self.identity = {"source": "dataset_field", "field": self.field,
                             "end_of_turn_id": int(self.end_id)}
        else:
            raise TeacherConfigError(
                f"--responses-from {self.spec!r} is neither a responses file (akd rollout --out) "
                f"nor a column of {config.data.dataset} (columns: {', '.join(dataset.column_names)})")

    def items(self, pairs: list[PromptPair], indices: range, num_rows: int,
              max_model_len: int, skipped: Counter) -> list[ScoreItem]:
        """The responses to score for these prompt pairs; the unusable ones counted by reason.
        prompt + response must leave one position free (vLLM's rule, see inference.spec)."""
        items = self._from_file(pairs, indices, num_rows, skipped) if self.file else \
            self._from_field(pairs, skipped)
        kept = []
        for item in items:
            if not item.response_ids:
                skipped[SKIP_EMPTY_RESPONSE] += 1
            elif len(item.pair.teacher_ids) + len(item.response_ids) > max_model_len - 1:
                skipped[SKIP_RESPONSE_TOO_LONG] += 1
            else:
                kept.append(item)
        return kept

    def _from_field(self, pairs: list[PromptPair], skipped: Counter):
        for pair in pairs:
            text = self.view[pair.row_index][self.field]
            if text is not None and not isinstance(text, str):
                skipped[SKIP_NON_STRING_RESPONSE] += 1
                continue
            if text is None or not text.strip():
                skipped[SKIP_EMPTY_RESPONSE] += 1
                continue
            ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
            if not ids or ids[-1] != self.end_id:  # the answer ends its turn, as a generated one does
                ids.append(int(self.end_id))
            yield ScoreItem(example_id(self.tag, pair.row_index, 0), pair, ids, "stop")

    def _from_file(self, pairs: list[PromptPair], indices: range, num_rows: int,
                   skipped: Counter):
        by_row = {p.row_index: p for p in pairs}
        for response in self.file:
            match = _EXAMPLE_ID.match(response.example_id)
            if match is None or match["tag"] != self.tag or int(match["row"]) >= num_rows:
                skipped[SKIP_PROMPT_MISSING] += 1
                continue
            row = int(match["row"])
            if row not in indices:
                continue  # outside --offset/--limit, or another worker's row
            pair = by_row.get(row)
            if pair is None:  # the row itself was skipped (and counted) by its reason
                skipped[SKIP_ROW_SKIPPED] += 1
                continue
            if list(response.prompt_ids) != pair.student_ids:
                raise ResponsesFileError(
                    f"{self.file.root}: example {response.example_id!r} was sampled after another "
                    f"prompt than this run's student prompt (rollout template "
                    f"{(self.file.identity.get('template') or {}).get('name')!r}: pass it as "
                    "--student-template, with --student-tokenizer the rollout model, or the "
                    "dataset row changed)")
            yield ScoreItem(response.example_id, pair, list(response.response_ids),
                            response.finish_reason)


def score_into(writer: CacheWriter, items: list[ScoreItem], config: TeacherCacheConfig,
               stats: RunStats, tokenizer) -> float:
    """Score chunk by chunk (chunks.run_chunks: the resume granularity, as in generation).
    Returns the seconds spent scoring."""
    engine = open_engine(config.model, config.engine, seed=config.sampling.seed,
                         max_logprobs=config.k)

    def take(chunk, scored):
        for item, scores in zip(chunk, scored):
            writer.add(CachedExample(
                example_id=item.example_id, prompt_ids=item.pair.student_ids,
                response_ids=item.response_ids, topk_ids=scores.topk_ids,
                topk_logprobs=scores.topk_logprobs, sampled_logprobs=scores.token_logprobs,
                finish_reason=item.finish_reason))
            stats.add(tokenizer.decode(item.response_ids, skip_special_tokens=True),
                      scores.topk_logprobs, item.finish_reason)
        return len(chunk), stats.tokens

    def call(chunk):
        return engine.score([i.pair.teacher_ids for i in chunk], [i.response_ids for i in chunk],
                            config.k)

    return run_chunks(items, config.output.chunk_size, engine, writer, call, take,
                      total=len(items), unit="ex", desc="teacher scores",
                      progress=config.output.progress)
