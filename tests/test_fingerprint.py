"""The tokenizer fingerprint tells shareable tokenizers apart by ids, not by sizes or templates."""
from transformers import AutoTokenizer

from cache_schema import tokenizer_fingerprint, tokenizer_size


def test_fingerprint_ignores_chat_template_and_sees_ids(tiny_teacher, tiny_student, tmp_path):
    teacher = AutoTokenizer.from_pretrained(tiny_teacher)
    student = AutoTokenizer.from_pretrained(tiny_student)
    assert tokenizer_fingerprint(teacher) == tokenizer_fingerprint(student)

    student.chat_template = student.chat_template.replace("\n", "\\n")  # a template difference only
    assert tokenizer_fingerprint(teacher) == tokenizer_fingerprint(student)

    student.add_special_tokens({"additional_special_tokens": ["<|fim_middle|>"]})
    assert tokenizer_fingerprint(teacher) != tokenizer_fingerprint(student)
    assert tokenizer_size(student) == tokenizer_size(teacher) + 1


def test_fingerprint_changes_when_an_id_moves(tiny_teacher, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    before = tokenizer_fingerprint(tokenizer)
    vocab = tokenizer.get_vocab()

    class Swapped:
        added_tokens_decoder = tokenizer.added_tokens_decoder

        def get_vocab(self):
            swapped = dict(vocab)
            a, b = "a", "b"
            swapped[a], swapped[b] = vocab[b], vocab[a]
            return swapped

    assert tokenizer_fingerprint(Swapped()) != before
