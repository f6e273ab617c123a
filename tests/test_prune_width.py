"""`akd prune --method width` on tiny models: fewer MLP neurons, the right ones, the same function."""
import hashlib
import json
import os
import shutil

import pytest
import torch
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from model_tools.calibration import default_calibration_file, load_calibration  # noqa: E402
from model_tools.prune import PROVENANCE, PruneError  # noqa: E402
from model_tools.width_prune import WidthPruneConfig, mlp_importance, prune_width  # noqa: E402
from pipeline.cli import main  # noqa: E402
from engine_agreement import assert_vllm_agrees_with_hf  # noqa: E402
from tiny_models import build_model  # noqa: E402

N_LAYERS, HIDDEN, NEURONS = 3, 64, 128  # tiny_models: intermediate_size = 2 * hidden
PROMPT = "Write a Python function that reverses a string. def add(a, b): return a + b"
ROWS = [{"instruction": "Write a Python function that reverses a string.", "input": "",
         "output": "def reverse(s):\n    return s[::-1]\n"},
        {"instruction": "Create a list of the first ten square numbers.", "input": "n = 10",
         "output": "squares = [i * i for i in range(n)]\nprint(squares)\n"},
        {"instruction": "class Stack", "output": "class Stack:\n    def __init__(self):\n        self.items = []\n"}]


@pytest.fixture(scope="module")
def source(tiny_student, tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    return build_model(tmp_path_factory.mktemp("wide") / "source", tokenizer, hidden=HIDDEN,
                       layers=N_LAYERS, seed=7)


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("calibration") / "rows.json"
    path.write_text(json.dumps(ROWS))
    return path


def width(rows_file, **settings):
    return WidthPruneConfig(calibration=str(rows_file), calibration_rows=len(ROWS), **settings)


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def logits(model, folder):
    ids = AutoTokenizer.from_pretrained(folder)(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def kept_neurons(small, big) -> list[list[int]]:
    """Per layer, the source neuron of each pruned neuron, found by its (unique) gate_proj row."""
    found = []
    for little, large in zip(small.model.layers, big.model.layers):
        same = (little.mlp.gate_proj.weight[:, None, :] == large.mlp.gate_proj.weight[None, :, :]).all(-1)
        assert (same.sum(1) == 1).all()
        found.append(same.float().argmax(1).tolist())
    return found


# ---------------------------------------------------------------- the function is kept


def test_keeping_every_neuron_reproduces_the_logits_exactly(source, rows_file, tmp_path):
    provenance = prune_width(source, tmp_path / "all", width(rows_file, mlp_keep=1.0))
    big, same = load(source), load(tmp_path / "all")
    assert torch.equal(logits(same, source), logits(big, source))
    assert provenance["intermediate_size"] == provenance["source_intermediate_size"] == NEURONS
    assert provenance["parameters_after"] == provenance["parameters_before"]


def test_pruned_logits_equal_the_source_with_dropped_neurons_zeroed(source, rows_file, tmp_path):
    out = tmp_path / "75"
    provenance = prune_width(source, out, width(rows_file, mlp_keep=0.75))
    small, big = load(out), load(source)
    assert small.config.intermediate_size == 96 and small.config.model_type == "qwen2"
    for layer in small.model.layers:
        assert layer.mlp.gate_proj.weight.shape == layer.mlp.up_proj.weight.shape == (96, HIDDEN)
        assert layer.mlp.down_proj.weight.shape == (HIDDEN, 96)
    kept = kept_neurons(small, big)
    assert all(neurons == sorted(neurons) for neurons in kept)  # original order kept
    reference = load(source)
    with torch.no_grad():
        for layer, neurons in zip(reference.model.layers, kept):
            dropped = sorted(set(range(NEURONS)) - set(neurons))
            layer.mlp.down_proj.weight[:, dropped] = 0
    expected = logits(reference, source)
    assert not torch.allclose(expected, logits(big, source), atol=1e-3)  # the zeroing matters
    torch.testing.assert_close(logits(small, out), expected, atol=1e-5, rtol=1e-5)
    assert provenance["parameters_after"] == sum(p.numel() for p in small.parameters())
    assert provenance["parameters_before"] - provenance["parameters_after"] == N_LAYERS * 3 * 32 * HIDDEN


def test_cached_generation_matches_uncached_after_reload(source, rows_file, tmp_path):
    prune_width(source, tmp_path / "half", width(rows_file, intermediate_size=64))
    model = load(tmp_path / "half")
    ids = AutoTokenizer.from_pretrained(source)(PROMPT, return_tensors="pt")["input_ids"]
    runs = [model.generate(ids, do_sample=False, max_new_tokens=12, min_new_tokens=12, use_cache=cache)
            for cache in (True, False)]
    assert runs[0].tolist() == runs[1].tolist()


def test_bfloat16_source_stays_bfloat16(source, rows_file, tmp_path):
    folder = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    prune_width(folder, tmp_path / "out", width(rows_file, mlp_keep=0.5))
    small = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto")
    assert small.dtype == torch.bfloat16 and small.config.intermediate_size == 64
    big = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    for neurons, little, large in zip(kept_neurons(small, big), small.model.layers, big.model.layers):
        assert torch.equal(little.mlp.down_proj.weight, large.mlp.down_proj.weight[:, neurons])


# ---------------------------------------------------------------- the right neurons are kept


def test_importance_is_the_mean_abs_of_down_projs_input(source, tiny_student):
    model = load(source)
    sequences = load_calibration(AutoTokenizer.from_pretrained(source), None, 2, 0, 64).sequences
    seen = {i: [] for i in range(N_LAYERS)}
    hooks = [layer.mlp.register_forward_pre_hook(lambda _m, args, i=i: seen[i].append(args[0][0]))
             for i, layer in enumerate(model.model.layers)]
    importance = mlp_importance(model, sequences)
    for hook in hooks:
        hook.remove()
    for i, layer in enumerate(model.model.layers):
        x = torch.cat(seen[i])
        with torch.no_grad():
            expected = (torch.nn.functional.silu(layer.mlp.gate_proj(x)) * layer.mlp.up_proj(x)).abs().mean(0)
        torch.testing.assert_close(importance[i].float(), expected, atol=1e-6, rtol=1e-5)


@pytest.fixture(scope="module")
def planted(source, tmp_path_factory):
    """The source with, per layer, 32 neurons made 100x important (same function) and 16 made dead.

    Scaling up_proj row i by 100 and down_proj column i by 1/100 leaves the model's output
    as it was but multiplies neuron i's importance by 100; a zero up_proj row gives 0.
    """
    model, generator = load(source), torch.Generator().manual_seed(3)
    important, dead = [], []
    with torch.no_grad():
        for layer in model.model.layers:
            order = torch.randperm(NEURONS, generator=generator)
            big, zero = sorted(order[:32].tolist()), sorted(order[32:48].tolist())
            layer.mlp.up_proj.weight[big] *= 100
            layer.mlp.down_proj.weight[:, big] /= 100
            layer.mlp.up_proj.weight[zero] = 0
            important.append(big)
            dead.append(zero)
    folder = tmp_path_factory.mktemp("planted") / "source"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder, important, dead


def test_the_most_important_neurons_are_kept(planted, rows_file, tmp_path):
    folder, important, dead = planted
    provenance = prune_width(folder, tmp_path / "top", width(rows_file, intermediate_size=32))
    assert kept_neurons(load(tmp_path / "top"), load(folder)) == important
    for layer in provenance["layers"]:
        assert layer["min_kept"] > layer["max_dropped"]
        assert layer["mean_kept"] > layer["mean_dropped"] and 0.9 < layer["kept_share"] <= 1


def test_dead_neurons_are_the_ones_dropped(planted, rows_file, tmp_path):
    folder, _, dead = planted
    prune_width(folder, tmp_path / "alive", width(rows_file, intermediate_size=NEURONS - 16))
    kept = kept_neurons(load(tmp_path / "alive"), load(folder))
    assert [sorted(set(range(NEURONS)) - set(neurons)) for neurons in kept] == dead


# ---------------------------------------------------------------- calibration and provenance


def test_default_calibration_is_the_end_of_code_alpaca(source, tmp_path):
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out"), "--method", "width",
                                       "--mlp-keep", "0.5"])
    assert result.exit_code == 0, result.output
    assert f"kept 64 of 128 MLP neurons in each of {N_LAYERS} layers" in result.output
    provenance = json.loads((tmp_path / "out" / PROVENANCE).read_text())
    shipped = default_calibration_file()
    n_rows = len(json.loads(shipped.read_text()))
    calibration = provenance["calibration"]
    assert calibration["file"] == str(shipped.resolve()) and n_rows == calibration["file_rows"] == 2017
    assert calibration["rows"] == [n_rows - 40, n_rows] and calibration["n_rows"] == 40
    assert calibration["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert provenance["method"] == "width" and provenance["kept_fraction"] == 0.5
    assert provenance["settings"]["mlp_keep"] == 0.5 and len(provenance["layers"]) == N_LAYERS
    assert provenance["source"] == str(source.resolve())


def test_calibration_sequences_hold_prompt_and_answer(source, rows_file):
    tokenizer = AutoTokenizer.from_pretrained(source)
    calibration = load_calibration(tokenizer, rows_file, 2, 1, 1024)
    assert calibration.first_row == 1 and len(calibration.sequences) == 2
    text = tokenizer.decode(calibration.sequences[0])
    assert text.startswith("<|im_start|>user\nCreate a list of the first ten square numbers.")
    assert "n = 10" in text and "<|im_start|>assistant\nsquares = [i * i" in text
    assert calibration.truncated == 0
    short = load_calibration(tokenizer, rows_file, 3, 0, 5)
    assert [len(s) for s in short.sequences] == [5, 5, 5] and short.truncated == 3


# ---------------------------------------------------------------- bad options


def one_line_error(result, fragment):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: PruneError: "), result.output
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["--mlp-keep", "0"], "--mlp-keep must be in (0, 1], got 0.0"),
    (["--mlp-keep", "1.5"], "--mlp-keep must be in (0, 1], got 1.5"),
    (["--mlp-keep", "-0.2"], "--mlp-keep must be in (0, 1]"),
    (["--intermediate-size", "0"], "--intermediate-size must be at least 1"),
    (["--intermediate-size", "129"], "--intermediate-size 129 is larger than the model's 128"),
    (["--mlp-keep", "0.5", "--intermediate-size", "8"], "exactly one of --mlp-keep and --intermediate-size"),
    ([], "exactly one of --mlp-keep and --intermediate-size"),
    (["--mlp-keep", "0.5", "--calibration", "/nowhere/rows.json"], "--calibration: /nowhere/rows.json does not"),
    (["--mlp-keep", "0.5", "--calibration-rows", "0"], "--calibration-rows must be at least 1"),
    (["--mlp-keep", "0.5", "--calibration-offset", "2000"], "--calibration-rows 40 from row 2000 runs past"),
    (["--mlp-keep", "0.5", "--calibration-offset", "-1"], "--calibration-offset must be at least 0"),
    (["--mlp-keep", "0.5", "--keep", "0,1"], "apply to --method depth only"),
    (["--mlp-keep", "0.5", "--every", "3"], "apply to --method depth only"),
])
def test_bad_width_options_are_one_line(source, tmp_path, args, fragment):
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out"), "--method", "width", *args])
    one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_width_options_without_method_width_are_refused(source, tmp_path):
    result = CliRunner().invoke(main, ["prune", str(source), str(tmp_path / "out"), "--mlp-keep", "0.5"])
    one_line_error(result, "--mlp-keep is a width-pruning option: add --method width")


@pytest.mark.parametrize("content, fragment", [
    ("[{\"instruction\": ", "is not JSON"),
    ("{\"rows\": []}", "must hold a JSON list of rows"),
    (json.dumps([{"instruction": "x", "output": ""}]), "row 0: needs a non-empty string 'output'"),
    (json.dumps(["text"]), "row 0: a row must be a JSON object, got str"),
])
def test_bad_calibration_files_name_file_and_row(source, tmp_path, content, fragment):
    path = tmp_path / "rows.json"
    path.write_text(content)
    with pytest.raises(PruneError, match="--calibration: .*rows.json") as error:
        prune_width(source, tmp_path / "out", WidthPruneConfig(mlp_keep=0.5, calibration=str(path),
                                                               calibration_rows=1))
    assert fragment in str(error.value)
    assert not (tmp_path / "out").exists()


def test_jsonl_calibration(source, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in ROWS) + "\n")
    provenance = prune_width(source, tmp_path / "out", WidthPruneConfig(mlp_keep=0.5, calibration=str(path),
                                                                        calibration_rows=2))
    assert provenance["calibration"]["rows"] == [1, 3] and provenance["calibration"]["file_rows"] == 3


# ---------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_vllm_loads_the_width_pruned_model_and_agrees_with_hf(source, rows_file, tmp_path):
    out = tmp_path / "out"
    prune_width(source, out, width(rows_file, mlp_keep=0.75))
    assert_vllm_agrees_with_hf(out)
    shutil.rmtree(out)
