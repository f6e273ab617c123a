"""A tokenizer fingerprint that says whether two models can share one cache.

The cache stores token ids, so teacher and student must map text to the same ids.
`vocab_size` is not evidence of that (Qwen2.5-Coder 7B and 0.5B report different sizes
with one tokenizer), and the chat template is not part of it (two converted Qwen models
differ in one escaped brace of the tool-call text). We hash the token-to-id map and the
added tokens with their special flag.
"""
from __future__ import annotations

import hashlib
import json


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 over the sorted token-to-id map and the added tokens (content, id, special)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    added = []
    for token_id, token in sorted(getattr(tokenizer, "added_tokens_decoder", {}).items()):
        added.append([int(token_id), str(token.content), bool(getattr(token, "special", False))])
    payload = json.dumps({"vocab": vocab, "added": added}, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def tokenizer_size(tokenizer) -> int:
    """Number of real token ids (logits beyond it are padding rows of the LM head)."""
    return len(tokenizer.get_vocab())
