"""The distillation trainer end to end on tiny models: alignment, learning, run directory, errors."""
import json
import os

import pytest
import torch

from cache_schema import CacheError, tokenizer_fingerprint
from distill_cache import FINE_GRID_ENCODING, random_cache, teacher_cache
from stages.distill import (
    DistillConfig,
    DistillConfigError,
    NonFiniteLossError,
    TokenizerMismatchError,
    train,
)
from stages.distill.checkpoint import list_checkpoints

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_config(cache, student, run_dir, **overrides) -> DistillConfig:
    options = dict(caches=[str(cache)], student=str(student), run_dir=str(run_dir), max_steps=2, lr=1e-3,
                   warmup_steps=0, precision="float32", progress=False, plots=False, num_workers=0, max_batch_tokens=128,
                   max_seq_len=128, max_batch_examples=4, eval_fraction=0.25, threads=1, final_dtype="float32")
    options.update(overrides)
    return DistillConfig.from_options(options)


@pytest.fixture(scope="module")
def full_vocab_cache(tiny_teacher, tmp_path_factory):
    """Every token stored, on a fine log-prob grid (<= 1e-4 nats): the default grid (<= 0.01 nats
    per entry) would add ~3e-4 nats of FKL over 384 flat entries and blur the alignment check."""
    return teacher_cache(tiny_teacher, tmp_path_factory.mktemp("full"), examples=12, max_new_tokens=8,
                         encoding=FINE_GRID_ENCODING)


@pytest.fixture(scope="module")
def topk_cache(tiny_teacher, tmp_path_factory):
    """k = 8 in the writer's default encoding."""
    return teacher_cache(tiny_teacher, tmp_path_factory.mktemp("topk"), examples=20, max_new_tokens=8, k=8)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_student):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_student)


@pytest.mark.parametrize("which, loss", [("full", "akd"), ("full", "fkl"), ("topk", "akd")])
def test_a_teacher_distilled_from_its_own_cache_starts_at_zero_loss(which, loss, full_vocab_cache, topk_cache,
                                                                     tiny_teacher, tmp_path):
    cache = full_vocab_cache if which == "full" else topk_cache
    summary = train(tiny_config(cache, tiny_teacher, tmp_path, kind=loss, max_steps=1, lr=1e-12))
    first = summary["train"]
    assert abs(first["loss"]) < 1e-4 and abs(first["fkl"]) < 1e-4 and abs(first["rkl"]) < 1e-4
    assert first["top1_agreement"] == 1.0
    assert abs(summary["metrics"][0]["eval_fkl"]) < 1e-4  # the step-0 eval, before any update


def test_distilling_the_student_lowers_heldout_fkl(topk_cache, tiny_student, tmp_path):
    summary = train(tiny_config(topk_cache, tiny_student, tmp_path, max_steps=12, lr=3e-3, eval_every=6,
                                checkpoint_every=5, keep_checkpoints=2, plots=True, kind="akd"))
    evals = [r for r in summary["metrics"] if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 6, 12]
    assert evals[-1]["eval_fkl"] < 0.8 * evals[0]["eval_fkl"]
    assert evals[-1]["eval_nll"] < evals[0]["eval_nll"]
    assert 0 < summary["train"]["head_weight"] < 1

    run = tmp_path
    config = json.loads((run / "config.json").read_text())
    cache = config["mix"]["caches"][0]
    assert cache["teacher"] == {"model": "tiny-teacher", "revision": "test"} and cache["probability"] == 1.0
    assert cache["k"] == 8 and config["options"]["lr"] == 3e-3 and config["options"]["loss"]["kind"] == "akd"
    assert "loss" not in config and "cache" not in config  # each setting stored once
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(summary["metrics"]) == 12 + 3
    assert all((run / name).stat().st_size > 1000 for name in ("losses.png", "head_weight.png", "lr.png"))
    assert [p.name for p in list_checkpoints(run)] == ["step-0000010", "step-0000012"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = AutoModelForCausalLM.from_pretrained(run / "final")
    assert final.config.use_cache  # training turns it off; the saved model must generate with it
    saved = json.loads((run / "summary.json").read_text())
    assert saved["steps"] == 12 and saved["eval"]["eval_fkl"] == evals[-1]["eval_fkl"]
    assert saved["peak_memory_gib"] > 0 and "metrics" not in saved
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(run / "final")) == cache["tokenizer_fingerprint"]
    original = AutoModelForCausalLM.from_pretrained(tiny_student)
    assert not torch.equal(final.lm_head.weight, original.lm_head.weight)


def test_each_heldout_sequence_is_written_and_they_pool_to_the_logged_figures(topk_cache, tiny_student, tmp_path):
    from stages.distill.run_folder import read_heldout_sequences

    summary = train(tiny_config(topk_cache, tiny_student, tmp_path, max_steps=4, eval_every=2, lr=3e-3,
                                heldout_per_sequence=True, kind="akd"))
    evals = {r["step"]: r for r in summary["metrics"] if r["split"] == "eval"}
    assert sorted(evals) == [0, 2, 4]
    for step, record in evals.items():
        rows = read_heldout_sequences(tmp_path, step)
        assert sum(r["tokens"] for r in rows.values()) == record["eval_tokens"]
        assert len({r["example_id"] for r in rows.values()}) == len(rows) > 1  # one row a sequence
        for key, metric in (("fkl", "eval_fkl"), ("rkl", "eval_rkl"), ("ce", "eval_nll")):
            pooled = sum(r[key] * r["tokens"] for r in rows.values()) / record["eval_tokens"]
            assert pooled == pytest.approx(record[metric], rel=1e-5), key
    assert read_heldout_sequences(tmp_path) == read_heldout_sequences(tmp_path, 4)  # the last step by default
    assert read_heldout_sequences(tmp_path / "elsewhere") == {}


def test_rerunning_a_finished_run_resumes_and_a_changed_option_is_refused(topk_cache, tiny_student, tmp_path):
    config = tiny_config(topk_cache, tiny_student, tmp_path, checkpoint_every=1)
    first = train(config)
    again = train(config)  # nothing left to train: same weights, same metrics
    assert again["steps"] == 2 and again["metrics"] == first["metrics"]
    with pytest.raises(DistillConfigError, match="lr: the run in place has 0.001, this command has 0.002") as caught:
        train(tiny_config(topk_cache, tiny_student, tmp_path, lr=2e-3))
    assert str(caught.value).endswith("choose another --runs-dir")  # the option akd distill has


def test_bf16_autocast_and_gradient_checkpointing_train(topk_cache, tiny_student, tmp_path):
    plain = train(tiny_config(topk_cache, tiny_student, tmp_path / "a", precision="bf16"))
    checkpointed = train(tiny_config(topk_cache, tiny_student, tmp_path / "b", precision="bf16",
                                     gradient_checkpointing=True))
    losses = [[r["loss"] for r in s["metrics"] if r["split"] == "train"] for s in (plain, checkpointed)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert all(0 < x < 20 for x in losses[0])


def test_a_student_with_another_tokenizer_is_refused_naming_both(tiny_student, tmp_path, tiny_tokenizer):
    cache = random_cache(tmp_path / "cache", examples=8, vocab=len(tiny_tokenizer), fingerprint="sha256:other")
    with pytest.raises(TokenizerMismatchError) as caught:
        train(tiny_config(cache, tiny_student, tmp_path / "run"))
    message = str(caught.value)
    assert "sha256:other" in message and tokenizer_fingerprint(tiny_tokenizer) in message
    assert str(tiny_student) in message and "'random'" in message
    assert not (tmp_path / "run").exists()


def test_a_corrupt_shard_stops_training_with_an_error_naming_it(tiny_student, tmp_path, tiny_tokenizer):
    cache = random_cache(tmp_path / "cache", examples=16, rows_per_shard=4, vocab=len(tiny_tokenizer),
                         fingerprint=tokenizer_fingerprint(tiny_tokenizer))
    shard = sorted((cache / "shards").glob("*.parquet"))[2]
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(CacheError, match=shard.name) as caught:
        train(tiny_config(cache, tiny_student, tmp_path / "run", max_steps=50, eval_fraction=0.0))
    assert "\n" not in str(caught.value)


def test_a_diverging_run_stops_at_the_first_nonfinite_loss_keeping_the_last_checkpoint(topk_cache, tiny_student,
                                                                                       tmp_path):
    config = tiny_config(topk_cache, tiny_student, tmp_path, lr=1e30, max_steps=20, checkpoint_every=1,
                         grad_clip=0.0, eval_fraction=0.0)
    with pytest.raises(NonFiniteLossError, match=r"step (\d+): the loss is nan") as caught:
        train(config)
    failed = int(str(caught.value).split()[1].rstrip(":"))
    kept = list_checkpoints(tmp_path)
    assert kept and kept[-1].name == f"step-{failed - 1:07d}" and str(kept[-1]) in str(caught.value)
    assert not (tmp_path / "final").exists()


def test_a_loss_gone_nonfinite_between_logging_steps_is_named_at_the_next_one(topk_cache, tiny_student, tmp_path):
    """The loop checks for non-finite values only when it reads its statistics back (logging,
    evaluating, saving): the error still names the first bad step, and nothing after it is
    logged or saved."""
    every_step = tiny_config(topk_cache, tiny_student, tmp_path / "a", lr=1e30, max_steps=20, checkpoint_every=1,
                             grad_clip=0.0, eval_fraction=0.0)
    with pytest.raises(NonFiniteLossError, match=r"step (\d+): the loss is nan on 1 rank") as caught:
        train(every_step)
    first_bad = int(str(caught.value).split()[1].rstrip(":"))
    sparse = tiny_config(topk_cache, tiny_student, tmp_path / "b", lr=1e30, max_steps=20, checkpoint_every=4,
                         log_every=4, grad_clip=0.0, eval_fraction=0.0)
    with pytest.raises(NonFiniteLossError, match=rf"step {first_bad}: the loss is nan on 1 rank"):
        train(sparse)
    kept = list_checkpoints(tmp_path / "b")
    assert all(int(p.name.split("-")[1]) < first_bad for p in kept)
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all(step < first_bad for step in logged)
    assert first_bad % 4, "pick settings where the first bad step is not a logging step"
