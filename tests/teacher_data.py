"""A small instruction file with good and bad rows, shared by the teacher-stage tests."""
import json

import numpy as np
import torch

GOOD = ["Write a Python function that reverses a string.", "Create a list of squares",
        "def add(a, b):", "class Stack", "for i in range(10): print(i)", "import os",
        "Write a Python function that adds two numbers.", "x = [n for n in range(5)]",
        "Print the first ten square numbers.", "class Queue", "def sub(a, b):",
        "Reverse a list in Python.", "import sys", "if __name__ == '__main__':",
        "Sort a list of numbers.", "Create a stack class."]
BAD = [({"input": "no instruction"}, "missing_instruction"),
       ({"instruction": None}, "missing_instruction"),
       ({"instruction": "   \n"}, "empty_instruction"),
       ({"instruction": 42}, "non_string_instruction"),
       ({"instruction": "Sum a list.", "input": ["not", "text"]}, "non_string_input"),
       ({"instruction": "print(i) " * 400}, "prompt_too_long")]
INPUT = "numbers = 1, 2, 3"
SKIPPED = {"empty_instruction": 1, "missing_instruction": 2, "non_string_input": 1,
           "non_string_instruction": 1, "prompt_too_long": 1}


def write_rows(path, field="instruction"):
    """Good rows (every third with an input; not JSON-looking text, see rows.py) interleaved with the bad ones; returns the
    row indices of the good rows."""
    rows, good = [], []
    bad = list(BAD)
    for i, text in enumerate(GOOD):
        good.append(len(rows))
        rows.append({field: text, "input": INPUT if i % 3 == 0 else "", "output": "ok"})
        if i % 2 == 1 and bad:
            row, _ = bad.pop(0)
            rows.append({(field if k == "instruction" else k): v for k, v in row.items()})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return good


def check_alignment(cache_dir, model_dir, good_rows, teacher="enhanced", student="plain",
                    greedy=True, tie=1e-4):
    """Recompute every cached position with one HF forward pass over teacher prompt + response
    (response token j is predicted at index len(prompt) + j - 1) and compare; returns the
    number of examples checked. Log-probs may differ by the cache encoding's rounding (its
    grid's bound, or float16's); ids may swap only where two log-probs are within `tie`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cache_schema import CacheReader
    from inference.templates import get_template

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    teacher_t, student_t = get_template(teacher), get_template(student)
    position = {row: j for j, row in enumerate(good_rows)}  # dataset row -> GOOD index
    reader = CacheReader(cache_dir)
    checked = 0
    for record in reader.iter_examples():
        j = position[int(record.example_id.split(":")[1])]
        input_text = INPUT if j % 3 == 0 else ""
        assert record.prompt_ids.tolist() == student_t.render(tok, GOOD[j], input_text)
        prompt = teacher_t.render(tok, GOOD[j], input_text)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + record.response_ids.tolist()])).logits[0]
        n = record.num_tokens
        full = torch.log_softmax(logits[len(prompt) - 1:len(prompt) - 1 + n], -1)
        top = torch.topk(full, reader.k)
        values = top.values.numpy()
        grid = getattr(reader.encoding, "grid", None)
        atol = (grid.max_error(float(values.min())) if grid is not None else 4e-3) + 1e-4
        np.testing.assert_allclose(record.topk_logprobs, values, atol=atol)
        np.testing.assert_allclose(record.topk_mass, np.exp(values).sum(-1), rtol=1e-4)
        gaps = np.abs(np.diff(values, axis=1))
        near_tie = np.zeros_like(values, dtype=bool)
        near_tie[:, 1:] |= gaps < tie
        near_tie[:, :-1] |= gaps < tie
        assert ((record.topk_ids == top.indices.numpy()) | near_tie).all()
        if greedy:
            assert ((record.response_ids == top.indices[:, 0].numpy()) | near_tie[:, 0]).all()
        if record.outside_pos is not None and len(record.outside_pos):
            pos = record.outside_pos.astype(int)
            sampled = full[pos, record.response_ids[pos]].numpy()
            np.testing.assert_allclose(record.outside_logprob, sampled, atol=1e-4)  # float32
        checked += 1
    return checked
