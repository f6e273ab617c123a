"""`akd speed`: decode tokens/s at a fixed answer length (every prompt gets exactly --new-tokens),
so a model that answers briefly cannot look slower than one that rambles."""
import json
import os

import pytest

from common.machine import cpu_dtype
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from inference import Generation, render_prompt  # noqa: E402
from pipeline.cli import main  # noqa: E402
from stages.evaluate import EvaluationError, load_tasks  # noqa: E402
from stages.evaluate.prompts import build_prompt  # noqa: E402
from stages.evaluate.speed import SpeedConfig, measure_speed  # noqa: E402


def test_akd_speed_writes_a_fixed_length_figure(tiny_teacher, data_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "speed" / "teacher"
    result = CliRunner().invoke(main, ["speed", "--model", str(tiny_teacher), "--out", str(out), "--backend", "hf",
                                       "--prompts", "3", "--new-tokens", "20", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "speed.json").read_text())
    # the tiny random model stops early on its own in an evaluation; here all 3 x 20 tokens come
    assert (record["prompts"], record["new_tokens"], record["generated_tokens"]) == (3, 20, 60)
    # seconds are kept to the millisecond: the rate's own seconds round to them (a fast CPU took 0.040 s),
    # within what the rate's own rounding (to 0.01 tokens/s) moves them (a busy CPU took 4.7 s)
    rate = record["tokens_per_s"]
    assert 60 / rate == pytest.approx(record["seconds"], abs=0.0005 + 60 * 0.005 / rate ** 2 + 1e-6)
    model = AutoModelForCausalLM.from_pretrained(tiny_teacher)
    assert record["parameters"] == sum(p.numel() for p in model.parameters())
    assert record["backend"] == record["engine"]["backend"] == "hf"
    assert (record["engine"]["dtype"], record["engine"]["max_model_len"]) == (cpu_dtype("auto"), 4096)
    assert record["sampling"]["ignore_eos"] and record["sampling"]["temperature"] == 0.0
    assert "torch" in record["software"] and "transformers" in record["software"]
    # the prompts are the first HumanEval tasks, asked as `akd eval` asks them (instruct)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    asked = [render_prompt(tokenizer, list(build_prompt(t, "instruct").messages))
             for t in load_tasks("humaneval", data_dir=data_dir, limit=3)]
    assert record["prompt_tokens"] == sum(len(p) for p in asked)
    assert "60 tokens = 3 prompts x 20" in result.output


def test_akd_speed_names_a_missing_model_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["speed", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                                       "--backend", "hf", "--models-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"ModelFolderError: --model {tmp_path / 'nowhere'}: no such folder" in error[0]
    assert not (tmp_path / "o").exists()


class _ShortEngine:
    """An engine that stops one answer early, as one that honoured an eos would."""

    max_model_len = 4096

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def generate(self, prompts, spec, **_):
        lengths = [spec.max_new_tokens] * len(prompts)
        lengths[-1] -= 1 if len(prompts) > 1 else 0
        return [[Generation(token_ids=[0] * n, finish_reason="length", text="")] for n in lengths]


def test_a_count_other_than_prompts_times_new_tokens_is_refused(tiny_teacher, data_dir, tmp_path):
    from transformers import AutoTokenizer

    config = SpeedConfig(model=str(tiny_teacher), out_dir=str(tmp_path), prompts=4, new_tokens=10,
                         data_dir=str(data_dir))
    with pytest.raises(EvaluationError, match=r"generated 39 tokens, not 4 prompts x 10 = 40"):
        measure_speed(config, engine=_ShortEngine(AutoTokenizer.from_pretrained(tiny_teacher)))
    assert not (tmp_path / "speed.json").exists()
    with pytest.raises(EvaluationError, match="--prompts 200: HumanEval has only 164 tasks"):
        measure_speed(SpeedConfig(model=str(tiny_teacher), out_dir=str(tmp_path), prompts=200,
                                  data_dir=str(data_dir)))
    with pytest.raises(EvaluationError, match="--new-tokens must be >= 1"):
        SpeedConfig(model="m", new_tokens=0)
