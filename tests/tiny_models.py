"""Tiny random Qwen2-style models and a matching tokenizer, built locally in seconds.

Tests never touch the network: this module trains a small byte-level BPE tokenizer on
in-repo text, gives it Qwen's chat special tokens and a ChatML template, and saves
random-weight Qwen2 models (a "teacher" and a smaller "student") that transformers and
vLLM both load.
"""
from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "Write a Python function that reverses a string.",
    "for i in range(10):\n    print(i * i)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "import os\nimport sys\n\nif __name__ == '__main__':\n    main()\n",
    "Create a list of the first ten square numbers and print it.",
    "```python\nx = [n for n in range(5) if n % 2 == 0]\n```",
    "You are an expert programmer. Answer with one complete, runnable solution.",
] * 20


def build_tokenizer(out_dir: Path, vocab_size: int = 384):
    """A byte-level BPE tokenizer with ChatML special tokens, saved to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_model(out_dir: Path, tokenizer, *, hidden: int = 128, layers: int = 2, seed: int = 0):
    """A random-weight Qwen2ForCausalLM sharing `tokenizer`, saved with it to out_dir."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    # Larger-than-default init gives peaked, input-dependent distributions, like a real LM.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_pair(root: Path):
    """(teacher_dir, student_dir): two random models of different sizes, one tokenizer."""
    root = Path(root)
    tokenizer = build_tokenizer(root / "tokenizer")
    teacher = build_model(root / "teacher", tokenizer, hidden=128, layers=2, seed=0)
    student = build_model(root / "student", tokenizer, hidden=64, layers=1, seed=1)
    return teacher, student
