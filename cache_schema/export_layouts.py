"""The plain-column layouts `akd cache export` writes: CacheRecords in, one Arrow table out.

Everything is built from what CacheReader hands out (CacheRecord), never from the cache's own
columns, so a new cache encoding or format version needs no change here.

Layout `akd` (the default): one row per cache example, targets indexed by response position.
    example_id     string
    prompt_ids     list<int32>              the student-side prompt
    response_ids   list<int32>              the teacher's answer, end-of-turn token included
    topk_ids       list<list<int32>>        [n][<=k] per response position, most probable first
    topk_logprobs  list<list<float32>>      [n][<=k] the teacher's raw full-vocabulary log-softmax at
                                            T=1, as the cache stores it (not renormalised)
    topk_mass      list<float32>            [n] sum of the teacher's top-k probabilities, from the
                                            unrounded log-probs
    tail_logprob   list<float32>            [n] log of the teacher's mass outside the top-k
                                            (-inf where the top-k holds it all)
    finish_reason  string                   "stop", or "length" when cut by the token limit
  Alignment: position j of topk_* / topk_mass / tail_logprob is the distribution response token j
  was drawn from, i.e. p(. | prompt_ids + response_ids[:j]). In the student's input
  prompt_ids + response_ids the logits at index len(prompt_ids) + j - 1 predict it. Entries the
  cache padded (fewer than k) are left out, so an inner list may hold fewer than k entries.

Layout `axolotl`: the columns Axolotl's KD plugin trains on, over the full sequence.
    input_ids         list<int32>           prompt_ids + response_ids (length L)
    attention_mask    list<int8>            all ones
    labels            list<int32>           -100 over the prompt, the response ids after it
    target_token_ids  list<list<int32>>     [L][k]
    target_logprobs   list<list<float32>>   [L][k] renormalised over the top-k (log p_j - log sum p)
    target_mask       list<list<int8>>      [L][k] 1 where the entry is a real target
  Alignment (Axolotl's): row t is the distribution over input_ids[t + 1], the token the student's
  logits at position t predict; target_mask[t] is 1 only where labels[t + 1] != -100. So response
  token j sits at row len(prompt_ids) + j - 1; the rows before it (the prompt) and the last row
  are padding (ids 0, log-prob -1e9, mask 0). This is what Axolotl's fused KD loss consumes:
  src/axolotl/integrations/kd/kernels/models.py hands hidden_states[:, t] and target_*[:, t] to the
  loss in src/axolotl/integrations/kd/kernels/liger.py at the same t, which takes its hard labels
  shifted by one (labels[:, 1:]); src/axolotl/integrations/kd/README.md ("Target alignment") states
  the same rule, and src/axolotl/integrations/kd/collator_online_teacher.py builds its vLLM rows
  that way (repository axolotl-ai-cloud/axolotl). The log-probs are renormalised over the top-k
  because that is what Axolotl's producers hand its loss with `kd_normalize_topk: true` (its
  default); Axolotl has no tail term, so this layout carries no tail and no finish reason: use
  the akd layout for those. Rows keep the cache's order (row r of an output shard is row r of
  the source shard), which joins them to the akd layout's example ids.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from cache_schema import PAD_ID, CacheError

LAYOUTS = ("akd", "axolotl")
IGNORE_INDEX = -100  # Axolotl's (and HF's) "no label here"
AXOLOTL_PAD_LOGPROB = -1e9  # finite, as Axolotl's collator pads: no -inf reaches its loss

AKD_SCHEMA = pa.schema([
    pa.field("example_id", pa.string()),
    pa.field("prompt_ids", pa.list_(pa.int32())),
    pa.field("response_ids", pa.list_(pa.int32())),
    pa.field("topk_ids", pa.list_(pa.list_(pa.int32()))),
    pa.field("topk_logprobs", pa.list_(pa.list_(pa.float32()))),
    pa.field("topk_mass", pa.list_(pa.float32())),
    pa.field("tail_logprob", pa.list_(pa.float32())),
    pa.field("finish_reason", pa.string()),
])
AXOLOTL_SCHEMA = pa.schema([
    pa.field("input_ids", pa.list_(pa.int32())),
    pa.field("attention_mask", pa.list_(pa.int8())),
    pa.field("labels", pa.list_(pa.int32())),
    pa.field("target_token_ids", pa.list_(pa.list_(pa.int32()))),
    pa.field("target_logprobs", pa.list_(pa.list_(pa.float32()))),
    pa.field("target_mask", pa.list_(pa.list_(pa.int8()))),
])
SCHEMAS = {"akd": AKD_SCHEMA, "axolotl": AXOLOTL_SCHEMA}


def layout_table(layout: str, records: list) -> pa.Table:
    if layout == "akd":
        return akd_table(records)
    if layout == "axolotl":
        return axolotl_table(records)
    raise CacheError(f"unknown export layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def tail_logprob(record) -> np.ndarray:
    """The record's log tail mass, as the cache stores it."""
    return np.asarray(record.tail_logprob, np.float32)


def akd_table(records: list) -> pa.Table:
    ids = _stack([r.topk_ids for r in records], np.int64)
    logprobs = _stack([r.topk_logprobs for r in records], np.float32)
    keep = ids != PAD_ID
    response_offsets = _offsets([r.num_tokens for r in records])
    columns = {
        "example_id": pa.array([r.example_id for r in records], pa.string()),
        "prompt_ids": _lists([r.prompt_ids for r in records], pa.int32()),
        "response_ids": _lists([r.response_ids for r in records], pa.int32()),
        "topk_ids": _nested(ids[keep], keep.sum(axis=1), response_offsets, pa.int32()),
        "topk_logprobs": _nested(logprobs[keep], keep.sum(axis=1), response_offsets, pa.float32()),
        "topk_mass": _lists([r.topk_mass for r in records], pa.float32()),
        "tail_logprob": _lists([tail_logprob(r) for r in records], pa.float32()),
        "finish_reason": pa.array([r.finish_reason for r in records], pa.string()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in AKD_SCHEMA], schema=AKD_SCHEMA)


def axolotl_table(records: list) -> pa.Table:
    rows = [_axolotl_rows(r) for r in records]
    lengths = [len(r["input_ids"]) for r in rows]
    k = rows[0]["target_token_ids"].shape[1] if rows else 0
    sequence_offsets = _offsets(lengths)
    entries = np.full(sum(lengths), k)
    columns = {name: _lists([r[name] for r in rows], AXOLOTL_SCHEMA.field(name).type.value_type)
               for name in ("input_ids", "attention_mask", "labels")}
    for name in ("target_token_ids", "target_logprobs", "target_mask"):
        kind = AXOLOTL_SCHEMA.field(name).type.value_type.value_type
        flat = _stack([r[name] for r in rows], kind.to_pandas_dtype()).reshape(-1)
        columns[name] = _nested(flat, entries, sequence_offsets, kind)
    return pa.Table.from_arrays([columns[f.name] for f in AXOLOTL_SCHEMA], schema=AXOLOTL_SCHEMA)


def _axolotl_rows(record) -> dict[str, np.ndarray]:
    """One example over its full sequence: row t holds the distribution over input_ids[t + 1]."""
    prompt, n = record.prompt_ids.size, record.num_tokens
    if prompt == 0 and n:
        raise CacheError(f"example {record.example_id}: empty prompt, so no input position predicts "
                         "response token 0 (the axolotl layout cannot place it)")
    length, k = prompt + n, record.topk_ids.shape[1]
    ids = np.zeros((length, k), np.int32)
    logprobs = np.full((length, k), AXOLOTL_PAD_LOGPROB, np.float32)
    mask = np.zeros((length, k), np.int8)
    real = record.topk_ids != PAD_ID
    rows = slice(prompt - 1, prompt - 1 + n)
    ids[rows] = np.where(real, record.topk_ids, 0)
    logprobs[rows] = np.where(real, _renormalised(record.topk_logprobs, real), AXOLOTL_PAD_LOGPROB)
    mask[rows] = real
    labels = np.concatenate([np.full(prompt, IGNORE_INDEX), record.response_ids])
    return {"input_ids": np.concatenate([record.prompt_ids, record.response_ids]),
            "attention_mask": np.ones(length, np.int8), "labels": labels,
            "target_token_ids": ids, "target_logprobs": logprobs, "target_mask": mask}


def _renormalised(logprobs: np.ndarray, real: np.ndarray) -> np.ndarray:
    """log p_j - log sum_j p_j over each position's real entries, in float64."""
    lp = np.where(real, logprobs.astype(np.float64), -np.inf)
    top = lp.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        norm = top + np.log(np.exp(lp - top).sum(axis=1, keepdims=True))
    return (lp - norm).astype(np.float32)


def _stack(arrays: list[np.ndarray], dtype) -> np.ndarray:
    if not arrays:
        return np.zeros((0, 0), dtype)
    return np.concatenate(arrays).astype(dtype, copy=False)


def _offsets(lengths) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise CacheError("export batch too large for 32-bit list offsets; lower the batch size")
    return offsets.astype(np.int32)


def _lists(rows: list[np.ndarray], kind: pa.DataType) -> pa.Array:
    values = np.concatenate(rows) if rows else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(_offsets([len(r) for r in rows])),
                                    pa.array(values.astype(kind.to_pandas_dtype(), copy=False), kind))


def _nested(values: np.ndarray, inner_lengths: np.ndarray, outer_offsets: np.ndarray,
            kind: pa.DataType) -> pa.Array:
    """list<list<kind>>: the inner lists cut `values`, the outer lists group the inner ones."""
    inner = pa.ListArray.from_arrays(pa.array(_offsets(inner_lengths)),
                                     pa.array(np.asarray(values).astype(kind.to_pandas_dtype(), copy=False), kind))
    return pa.ListArray.from_arrays(pa.array(outer_offsets), inner)
