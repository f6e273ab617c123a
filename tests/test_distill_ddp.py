"""torchrun with two gloo processes follows the single-process run with the same global batch.

Same data in every step on both sides: shuffling off, one example per micro-batch, a cache of
four equal shards. One process with four loader workers and grad_accum=4 reads shards
0, 1, 2, 3 in turn; two ranks with two workers and grad_accum=2 each (rank r reads shards r
and r + 2) put the same four examples in every step, accumulating locally under no_sync.
So the loss curves must agree to float rounding (tolerance 1e-5 relative for DDP, 1e-4 for
FSDP2, whose reduce-scatter sums in another order), not merely look alike.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cache_schema import tokenizer_fingerprint
from distill_cache import random_cache
from torchrun import build_twice_if_killed, torchrun

SCRIPT = "import json, sys\nfrom stages.distill import DistillConfig, train\ntrain(DistillConfig.from_options(json.loads(sys.argv[1])))\n"


def launch(options: dict, tmp_path: Path, nproc: int) -> None:
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT)
    torchrun(script, [json.dumps(options)], nproc)


def curve(run_dir: Path, split: str, key: str) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r[key] for r in map(json.loads, lines) if r["split"] == split]


@pytest.fixture(scope="module")
def runs(tiny_student, tmp_path_factory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)

    def build(root: Path):
        cache = random_cache(root / "cache", examples=40, rows_per_shard=10, vocab=len(tokenizer),
                             fingerprint=tokenizer_fingerprint(tokenizer), response_len=(3, 20))
        base = dict(caches=[str(cache)], student=str(tiny_student), max_steps=6, lr=3e-3, warmup_steps=1,
                    precision="float32", deterministic=True, threads=1, shuffle_buffer=1, sort_pool=1,
                    max_batch_examples=1, eval_fraction=0.2, eval_every=3, checkpoint_every=3, keep_checkpoints=2,
                    progress=False, plots=False, final_dtype="float32")
        launch({**base, "run_dir": str(root / "single"), "num_workers": 4, "grad_accum": 4}, root, 1)
        launch({**base, "run_dir": str(root / "ddp"), "num_workers": 2, "grad_accum": 2}, root, 2)
        fsdp = {**base, "run_dir": str(root / "fsdp"), "num_workers": 2, "grad_accum": 2, "fsdp": True}
        launch(fsdp, root, 2)
        # resume under FSDP: forget the last checkpoint and the result, rerun from step 3
        first_final = load_file(root / "fsdp" / "final" / "model.safetensors")
        shutil.rmtree(root / "fsdp" / "final")
        shutil.rmtree(root / "fsdp" / "checkpoints" / "step-0000006")
        launch(fsdp, root, 2)
        return root, first_final

    return build_twice_if_killed(build, lambda: tmp_path_factory.mktemp("ddp"))


@pytest.mark.slow
@pytest.mark.parametrize("mode, tolerance", [("ddp", 1e-5), ("fsdp", 1e-4)])
def test_two_gloo_processes_follow_the_single_process_loss_curve(runs, mode, tolerance):
    root, _ = runs
    single, multi = root / "single", root / mode
    assert len(curve(single, "train", "loss")) == 6
    assert curve(multi, "train", "tokens") == curve(single, "train", "tokens")  # same global batches
    assert curve(multi, "train", "epochs") == [[0]] * 6  # no shard ran dry: the steps held the same examples
    for split, key in (("train", "loss"), ("train", "grad_norm"), ("eval", "eval_fkl"), ("eval", "eval_nll")):
        assert curve(multi, split, key) == pytest.approx(curve(single, split, key), rel=tolerance), key
    expected, found = load_file(single / "final" / "model.safetensors"), load_file(multi / "final" / "model.safetensors")
    initial = load_file(Path(json.loads((single / "config.json").read_text())["options"]["student"]) / "model.safetensors")
    assert not torch.allclose(initial["lm_head.weight"], expected["lm_head.weight"], atol=1e-3)  # it trained
    for name in expected:
        assert torch.allclose(expected[name], found[name], atol=20 * tolerance, rtol=0), name


@pytest.mark.slow
def test_an_fsdp_run_resumed_from_its_checkpoint_ends_with_the_same_weights(runs):
    root, first_final = runs
    resumed = load_file(root / "fsdp" / "final" / "model.safetensors")
    for name, tensor in first_final.items():
        assert torch.equal(tensor, resumed[name]), name
