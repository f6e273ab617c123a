"""`akd prune` on tiny models: the pruned folder is a correct, loadable, smaller checkpoint."""
import json
import os
import shutil

import pytest
import torch
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from pipeline.cli import main  # noqa: E402
from model_tools.prune import PROVENANCE, PruneError, layers_to_keep, prune_layers, prune_model  # noqa: E402
from engine_agreement import assert_vllm_agrees_with_hf  # noqa: E402
from tiny_models import build_model  # noqa: E402

N_LAYERS = 6
KEPT = [0, 2, 4]
PROMPT = "Write a Python function that reverses a string. def add(a, b): return a + b"


@pytest.fixture(scope="module")
def deep_source(tiny_student, tmp_path_factory):
    """A 6-layer random Qwen2 with the tiny student's tokenizer (the fixture itself has 1 layer)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    return build_model(tmp_path_factory.mktemp("deep") / "source", tokenizer, hidden=64,
                       layers=N_LAYERS, seed=5)


@pytest.fixture(scope="module")
def sliding_source(deep_source, tmp_path_factory):
    """The same model with Qwen2's sliding window on layers 3-5 (window 4 tokens)."""
    folder = tmp_path_factory.mktemp("sliding") / "source"
    shutil.copytree(deep_source, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=4, max_window_layers=3,
                  layer_types=["full_attention"] * 3 + ["sliding_attention"] * 3)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def pruned(deep_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "half"
    return out, prune_layers(deep_source, out)


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def prompt_ids(folder):
    return AutoTokenizer.from_pretrained(folder)(PROMPT, return_tensors="pt")["input_ids"]


def manual_logits(source, keep, ids):
    """Logits of the source model run through the kept layers only, with hand-built masks."""
    model = load(source)
    config, inner = model.config, model.model
    n = ids.shape[1]
    q, kv = torch.arange(n)[:, None], torch.arange(n)[None, :]
    blocked = {"full_attention": kv > q}
    if config.sliding_window:
        blocked["sliding_attention"] = (kv > q) | (kv <= q - config.sliding_window)
    with torch.no_grad():
        hidden = inner.embed_tokens(ids)
        positions = torch.arange(n)[None, :]
        rotary = inner.rotary_emb(hidden, positions)
        for i in keep:
            mask = torch.zeros(n, n).masked_fill(blocked[config.layer_types[i]], float("-inf"))
            hidden = inner.layers[i](hidden, attention_mask=mask[None, None],
                                     position_ids=positions, position_embeddings=rotary)
        return model.lm_head(inner.norm(hidden))


def greedy(model, ids, use_cache):
    with torch.no_grad():
        return model.generate(ids, do_sample=False, max_new_tokens=12, min_new_tokens=12,
                              use_cache=use_cache)[0].tolist()


# ---------------------------------------------------------------- the pruned folder


def test_pruned_folder_holds_the_kept_layers_of_the_source(deep_source, pruned):
    out, provenance = pruned
    source, small = load(deep_source), load(out)
    assert small.config.num_hidden_layers == len(small.model.layers) == N_LAYERS // 2
    assert small.config.layer_types == ["full_attention"] * 3
    big, little = source.state_dict(), small.state_dict()
    expected = {k for k in big if ".layers." not in k}
    for new, old in enumerate(KEPT):
        prefix = f"model.layers.{old}."
        for key in (k for k in big if k.startswith(prefix)):
            renamed = f"model.layers.{new}." + key[len(prefix):]
            assert torch.equal(little[renamed], big[key]), renamed
            expected.add(renamed)
    for key in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert torch.equal(little[key], big[key])
    assert set(little) == expected
    assert provenance == json.loads((out / PROVENANCE).read_text())
    assert provenance["kept_layers"] == KEPT and provenance["source"] == str(deep_source.resolve())
    assert provenance["parameters_before"] == sum(p.numel() for p in source.parameters())
    assert provenance["parameters_after"] == sum(p.numel() for p in small.parameters())
    assert provenance["parameters_after"] < provenance["parameters_before"]


def test_pruned_folder_keeps_tokenizer_chat_template_and_generation_config(deep_source, pruned):
    out, _ = pruned
    assert (out / "model.safetensors").is_file()
    messages = [{"role": "user", "content": "reverse a string"}]
    before, after = AutoTokenizer.from_pretrained(deep_source), AutoTokenizer.from_pretrained(out)
    assert after.chat_template and after.apply_chat_template(messages, tokenize=False) == \
        before.apply_chat_template(messages, tokenize=False)
    assert after(PROMPT)["input_ids"] == before(PROMPT)["input_ids"]
    assert after.eos_token == before.eos_token == "<|im_end|>"
    source_gen = json.loads((deep_source / "generation_config.json").read_text())
    pruned_gen = json.loads((out / "generation_config.json").read_text())
    assert {k: pruned_gen.get(k) for k in ("eos_token_id", "pad_token_id")} == \
        {k: source_gen.get(k) for k in ("eos_token_id", "pad_token_id")}


def test_pruned_logits_equal_the_source_run_through_the_kept_layers(deep_source, pruned):
    out, _ = pruned
    ids = prompt_ids(deep_source)
    with torch.no_grad():
        logits = load(out)(ids).logits
    torch.testing.assert_close(logits, manual_logits(deep_source, KEPT, ids), atol=1e-5, rtol=1e-5)


def test_cached_generation_matches_uncached_after_reload(pruned):
    out, _ = pruned
    model, ids = load(out), prompt_ids(out)
    assert greedy(model, ids, use_cache=True) == greedy(model, ids, use_cache=False)


def test_in_memory_pruning_renumbers_layer_idx_for_the_kv_cache(deep_source):
    model = prune_model(load(deep_source), KEPT)
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    ids = prompt_ids(deep_source)
    assert greedy(model, ids, use_cache=True) == greedy(model, ids, use_cache=False)


def test_sliding_window_layers_keep_their_type(sliding_source, tmp_path):
    provenance = prune_layers(sliding_source, tmp_path / "out")
    small = load(tmp_path / "out")
    assert small.config.layer_types == ["full_attention", "full_attention", "sliding_attention"]
    assert small.config.max_window_layers == 2 and small.config.sliding_window == 4
    ids = prompt_ids(sliding_source)
    assert ids.shape[1] > 4  # long enough for the window to matter
    with torch.no_grad():
        logits = small(ids).logits
    torch.testing.assert_close(logits, manual_logits(sliding_source, KEPT, ids), atol=1e-5, rtol=1e-5)
    assert greedy(small, ids, use_cache=True) == greedy(small, ids, use_cache=False)
    assert provenance["kept_layers"] == KEPT


def test_explicit_keep_and_every_offset(deep_source, tmp_path):
    provenance = prune_layers(deep_source, tmp_path / "k", keep=[0, 1, 5])
    small, source = load(tmp_path / "k"), load(deep_source)
    assert provenance["kept_layers"] == [0, 1, 5] and len(small.model.layers) == 3
    assert torch.equal(small.model.layers[2].mlp.up_proj.weight, source.model.layers[5].mlp.up_proj.weight)
    assert layers_to_keep(6, every=3, offset=1) == [1, 4]
    assert layers_to_keep(6, every=1) == list(range(6))
    assert layers_to_keep(24) == list(range(0, 24, 2))


# ---------------------------------------------------------------- errors and overwriting


@pytest.mark.parametrize("keep, every, offset, match", [
    ([], 2, 0, "--keep is empty"),
    ([0, 6], 2, 0, "--keep: layer 6 is outside"),
    ([-1, 2], 2, 0, "--keep: layer -1 is outside"),
    ([2, 0], 2, 0, "--keep must list layers in increasing order"),
    ([0, 0], 2, 0, "without repeats"),
    ([0], 3, 0, "do not combine it with --every"),
    (None, 0, 0, "--every must be at least 1"),
    (None, 2, 6, "--offset 6 is outside"),
])
def test_bad_layer_choices_are_prune_errors(keep, every, offset, match):
    with pytest.raises(PruneError, match=match):
        layers_to_keep(6, keep, every, offset)


def run_cli(*args):
    return CliRunner().invoke(main, ["prune", *map(str, args)])


def one_line_error(result, *fragments, kind="PruneError"):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {kind}: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("keep, fragment", [
    ("", "--keep is empty"), ("0,x", "--keep: 'x' is not a layer index"),
    ("0,9", "--keep: layer 9 is outside the model's layers 0-5"), ("3,1", "--keep must"),
])
def test_cli_bad_keep_is_one_line(deep_source, tmp_path, keep, fragment):
    one_line_error(run_cli(deep_source, tmp_path / "out", "--keep", keep), fragment)
    assert not (tmp_path / "out").exists()


def test_cli_missing_source_is_one_line(tmp_path):
    one_line_error(run_cli(tmp_path / "nowhere", tmp_path / "out"), f"SOURCE {tmp_path / 'nowhere'}: no such folder",
                   kind="ModelFolderError")


def test_cli_refuses_to_overwrite_and_keeps_output_on_failure(deep_source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    one_line_error(run_cli(deep_source, out), str(out), "--overwrite")
    one_line_error(run_cli(deep_source, out, "--overwrite", "--keep", "0,9"), "--keep")
    assert (out / "mine.txt").read_text() == "keep me"
    result = run_cli(deep_source, out, "--overwrite", "--every", "3")
    assert result.exit_code == 0, result.output
    assert "kept layers [0, 3] of 6" in result.output
    assert not (out / "mine.txt").exists() and len(load(out).model.layers) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left


def test_refuses_to_prune_into_its_own_source(deep_source):
    with pytest.raises(PruneError, match="is the source folder itself"):
        prune_layers(deep_source, deep_source, overwrite=True)


# ---------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_vllm_loads_the_pruned_model_and_agrees_with_hf(pruned):
    out, _ = pruned
    assert_vllm_agrees_with_hf(out)


def test_a_pruned_folder_carries_a_model_card_naming_its_source(deep_source, tmp_path):
    from huggingface_hub import ModelCard

    result = run_cli(deep_source, tmp_path / "out", "--keep", "0,2,5")
    assert result.exit_code == 0, result.output
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.to_dict()["base_model"] == "source" and "pruned" in card.data.to_dict()["tags"]
    assert "kept layers [0, 2, 5] of 6" in card.text and str(tmp_path) not in card.content
    assert str(deep_source.parent) not in card.content
