"""Cost of a distillation training step at Qwen2.5-Coder-0.5B's shape, and of its loader.

(a) Step time (forward, backward, fused AdamW; float32 master weights, matmuls in bf16 or
    float32 as `--precision` resolves on this machine, like `akd distill`) with
    the AKD loss against the FKL loss on the same student and batch (goal AKD/FKL <= 1.10),
    and plain HF cross-entropy (full logits) as the reference;
(b) loss-only time (forward + backward of the loss from the final hidden states) of AKD,
    FKL and plain cross-entropy on the step's own positions;
(c) the share of training time the trainer waits for its loader (goal <= 2%), from a real
    `train()` run on the same synthetic cache with a shallower student (a faster step is
    the harder case for the loader), and that run's host syncs per step (tensor reads back
    to Python, counted by tests/host_syncs.py and split by the code that asked: the training
    loop, the loss, the model; --log-every above 1 shows the steps that log nothing).
Random weights built from Qwen2.5-Coder-0.5B's config (hidden 896, vocab 151,936), a
synthetic 151,665-token tokenizer and a synthetic k=20 cache written with CacheWriter;
nothing is downloaded. Wall and process CPU times are both reported: the CPU time is
steadier when other jobs share the cores.

    .venv/bin/python benchmarks/bench_distill.py    # ~4 minutes on 2 idle cores, 8 GiB
    .venv/bin/python benchmarks/bench_distill.py --parts loader --loader-layers 1   # the trainer only
    .venv/bin/python benchmarks/bench_distill.py --parts precision   # bf16 autocast against float32
Writes bench-results/distill.json and prints it.
"""
from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from inference.allocator import describe as describe_allocator  # noqa: E402

from cache_schema import CachedExample, CacheReader, CacheWriter, tokenizer_fingerprint  # noqa: E402
from common.machine import machine_facts  # noqa: E402
from stages.distill import DistillConfig, train  # noqa: E402
from stages.distill.config import PRECISIONS  # noqa: E402
from stages.distill.trainer import matmul_precision  # noqa: E402
from stages.distill.batching import collate, fit_example  # noqa: E402
from stages.distill.losses import LossConfig, topk_distill_loss  # noqa: E402
from stages.distill.student_model import DistillStudent  # noqa: E402
from host_syncs import SyncCounter  # noqa: E402

QWEN_05B = dict(hidden_size=896, intermediate_size=4864, num_attention_heads=14, num_key_value_heads=2,
                vocab_size=151_936, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                tie_word_embeddings=False)
TOKENIZER_SIZE = 151_665


def build_tokenizer(out: Path):
    """A word-level tokenizer with Qwen's number of ids: fingerprint and vocabulary size are real-sized.

    Saved beside a Qwen2 config.json and reloaded, as the trainer will load it from the student's
    folder (there AutoTokenizer picks Qwen2's tokenizer class, which adds <|endoftext|>).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config

    vocab = {f"t{i}": i for i in range(TOKENIZER_SIZE - 1)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="t1", pad_token="t0").save_pretrained(out)
    Qwen2Config(num_hidden_layers=1, **QWEN_05B).save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def build_cache(out: Path, fingerprint: str, examples: int, k: int, seed: int = 0) -> Path:
    """Peaked random teacher distributions (top-1 ~0.9 like code), prompts and answers of 100-150 tokens."""
    rng = np.random.default_rng(seed)
    identity = {"teacher": {"model": "synthetic", "revision": "bench"}, "tokenizer_fingerprint": fingerprint,
                "templates": {}, "sampling": {"temperature": 0.0}, "dataset": {"synthetic": examples}}
    writer = CacheWriter.open(out, identity, k=k, vocab_size=TOKENIZER_SIZE, rows_per_shard=16, overwrite=True)
    for i in range(examples):
        n = int(rng.integers(100, 151))
        probs = rng.dirichlet(np.full(k + 1, 0.1), size=n)
        probs[:, 0] += 8 * probs.sum(axis=1)  # make the top-1 dominant, then renormalise
        probs /= probs.sum(axis=1, keepdims=True)
        top = -np.sort(-probs[:, :k], axis=1)
        ids = np.stack([rng.choice(TOKENIZER_SIZE, size=k, replace=False) for _ in range(n)])
        writer.add(CachedExample(example_id=f"bench:{i}:0", prompt_ids=list(rng.integers(0, TOKENIZER_SIZE, int(rng.integers(100, 151)))),
                                 response_ids=list(ids[:, 0]), topk_ids=ids, topk_logprobs=np.log(top).astype(np.float32),
                                 finish_reason="stop"))
    writer.close()
    return out


def first_batch(cache: Path, max_tokens: int, rows: int) -> dict:
    """`rows` examples cut to max_tokens / rows positions each: a fixed [rows, T] batch."""
    examples = []
    for record in CacheReader(cache):
        example, _ = fit_example(record, max_tokens // rows)
        examples.append(example)
        if len(examples) == rows:
            break
    batch = collate(examples)
    batch.pop("example_ids")
    return batch


def interleaved(fns: dict, repeats: int) -> dict:
    """Time each fn `repeats` times, taking turns (a, b, c, a, b, c, ...) after one warm-up each,
    so load from other jobs on shared cores falls on every variant alike. Reports the median
    and the minimum (the least disturbed run) of wall and process CPU time."""
    for fn in fns.values():
        fn()
    walls = {name: [] for name in fns}
    cpus = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - w)
            cpus[name].append(time.process_time() - c)
    return {name: {"wall_s": statistics.median(walls[name]), "cpu_s": statistics.median(cpus[name]),
                   "min_wall_s": min(walls[name]), "min_cpu_s": min(cpus[name]), "walls": walls[name]}
            for name in fns}


def step_times(layers: int, batch: dict, vocab: int, repeats: int, chunk: int, precision: str,
               variants=("akd", "fkl", "hf_cross_entropy")) -> dict:
    """One model and one fused AdamW; the variants differ only in the loss (akd_float32 and
    akd_bf16: the AKD step with autocast off and on, whatever `precision` says)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=layers, **QWEN_05B))
    model.config.use_cache = False
    module = DistillStudent(model, LossConfig(chunk_size=chunk), vocab).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    # HF's own loss: labels are the input tokens that are response tokens (it shifts them itself)
    label_mask = torch.zeros_like(batch["response_mask"])
    label_mask[:, 1:] = batch["response_mask"][:, :-1]
    labels = batch["input_ids"].masked_fill(~(label_mask & batch["attention_mask"].bool()), -100)

    def distill_step(kind, bf16=precision == "bf16"):
        def step():
            module.loss_config = LossConfig(kind=kind, chunk_size=chunk)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _ = module(**batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    def hf_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = {"akd": distill_step("akd"), "fkl": distill_step("fkl"), "hf_cross_entropy": hf_step,
             "akd_float32": distill_step("akd", False), "akd_bf16": distill_step("akd", True)}
    return interleaved({name: steps[name] for name in variants}, repeats)


def loss_times(batch: dict, vocab: int, repeats: int, chunk: int, precision: str) -> dict:
    """Loss forward + backward from [N, 896] hidden states, LM head trained, in the step's precision."""
    n = int(batch["response_mask"].sum())
    torch.manual_seed(0)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    hidden = torch.randn(n, QWEN_05B["hidden_size"], dtype=dtype, requires_grad=True)
    weight = (torch.randn(QWEN_05B["vocab_size"], QWEN_05B["hidden_size"]) * 0.02).requires_grad_()
    targets = batch["target_ids"]

    def distill(kind):
        config = LossConfig(kind=kind, chunk_size=chunk)

        def run():
            loss, _ = topk_distill_loss(hidden, weight, batch["topk_ids"], batch["topk_logprobs"], batch["topk_mass"],
                                        targets, config, vocab_size=vocab, tail_logprob=batch["tail_logprob"])
            loss.backward()
            hidden.grad = weight.grad = None
        return run

    def plain_ce():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = F.linear(hidden, weight)
        F.cross_entropy(logits.float(), targets).backward()
        hidden.grad = weight.grad = None

    return {"positions": n, **interleaved({"akd": distill("akd"), "fkl": distill("fkl"),
                                           "plain_cross_entropy": plain_ce}, repeats)}


def loader_share(work: Path, cache: Path, tokenizer, layers: int, steps: int, tokens: int, log_every: int,
                 precision: str) -> dict:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    student = work / "student"
    Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=layers, **QWEN_05B)).save_pretrained(student)
    tokenizer.save_pretrained(student)
    config = DistillConfig.from_options(dict(
        caches=[str(cache)], student=str(student), run_dir=str(work / "run"), max_steps=steps, precision=precision,
        max_batch_tokens=tokens, max_seq_len=tokens // 2, num_workers=1, eval_fraction=0.0,
        checkpoint_every=10**6, log_every=log_every, progress=False, plots=False, overwrite=True))
    with SyncCounter(config.grad_accum) as counter:
        summary = train(config)
    train_rows = [r for r in summary["metrics"] if r["split"] == "train"]
    later = train_rows[1:]  # step 1 also waits for the worker process to start
    total_wait = summary["loader_wait_share"] * summary["train_time_s"]
    return {
        "student_layers": layers, "steps": steps, "num_workers": 1, "log_every": log_every,
        "share_all_steps": summary["loader_wait_share"],
        "share_after_first_step": (sum(r["data_wait_s"] for r in later) / sum(r["step_time_s"] for r in later)
                                   if later else None),
        "first_step_wait_s": train_rows[0]["data_wait_s"],
        "median_step_s": statistics.median(r["step_time_s"] for r in train_rows),
        "train_time_per_step_s": summary["train_time_s"] / steps, "loader_wait_s": total_wait,
        "host_syncs_per_step": host_syncs(counter, steps, log_every),
    }


def host_syncs(counter: SyncCounter, steps: int, log_every: int) -> dict:
    """Median reads back to the host per step, by who asked, on steps that log and steps that do
    not (the last step, which also saves the model, is left out), and the loop's all-reduces."""
    logging = [s for s in range(1, steps) if s % log_every == 0]
    quiet = [s for s in range(1, steps) if s % log_every]

    def median(bucket, kind="sync", name=None):
        per_step = counter.per_step(bucket, kind, name)
        return {label: statistics.median(per_step[s] for s in chosen)
                for label, chosen in (("logging_step", logging), ("quiet_step", quiet)) if chosen}

    return {"training_loop": median("loop"), "loss": median("loss"), "model": median("model"),
            "loader": median("loader"), "training_loop_all_reduce": median("loop", "collective", "all_reduce")}


def _ratios(times: dict, a: str, b: str) -> dict:
    return {clock: times[a][clock] / times[b][clock] for clock in ("wall_s", "cpu_s", "min_wall_s", "min_cpu_s")}


def _log(started: float, what: str) -> None:
    click.echo(f"[{time.perf_counter() - started:6.1f} s] {what}", err=True)


@click.command()
@click.option("--layers", default=8, show_default=True,
              help="decoder layers of the timed student (24 = the real depth; fewer keeps the bench short and "
                   "makes the loss a larger share of the step, so AKD/FKL can only be closer to 1 at 24)")
@click.option("--loader-layers", default=2, show_default=True, help="layers of the student of the loader run")
@click.option("--loader-steps", default=8, show_default=True)
@click.option("--tokens", default=512, show_default=True, help="tokens per batch (2 x 256)")
@click.option("--rows", default=2, show_default=True)
@click.option("--k", default=20, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="timed runs of each variant, taken in turns")
@click.option("--chunk-size", default=LossConfig().chunk_size, show_default=True)
@click.option("--log-every", default=DistillConfig.log_every, show_default=True,
              help="log_every of the loader run (host syncs are counted on steps that log and steps that do not)")
@click.option("--parts", default="step,loss,loader", show_default=True,
              help="which parts to run: step (a), loss (b), loader (c), comma-separated; precision: the "
                   "AKD step with bf16 autocast against float32, in turns (what --precision auto decides)")
@click.option("--precision", default=DistillConfig.precision, show_default=True, type=click.Choice(PRECISIONS),
              help="matmul precision of parts a-c, as akd distill --precision (auto: as this machine resolves it)")
@click.option("--out", default=str(ROOT / "bench-results" / "distill.json"), show_default=True)
def main(layers, loader_layers, loader_steps, tokens, rows, k, repeats, chunk_size, log_every, parts, precision, out):
    started = time.perf_counter()
    parts = set(parts.split(","))
    known = {"step", "loss", "loader", "precision"}
    if not parts <= known:
        raise click.BadParameter(f"unknown part(s) {sorted(parts - known)}", param_hint="--parts")
    precision = matmul_precision(DistillConfig(caches=("bench",), precision=precision), torch.device("cpu"))
    result = {}
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        work = Path(tmp)
        tokenizer = build_tokenizer(work / "tokenizer")
        cache = build_cache(work / "cache", tokenizer_fingerprint(tokenizer), examples=96, k=k)
        batch = first_batch(cache, tokens, rows)
        vocab = len(tokenizer.get_vocab())
        _log(started, "cache written")
        if "step" in parts:
            steps = step_times(layers, batch, vocab, repeats, chunk_size, precision)
            result.update({"step": steps, "step_ratio_akd_over_fkl": _ratios(steps, "akd", "fkl"),
                           "step_ratio_akd_over_hf_ce": _ratios(steps, "akd", "hf_cross_entropy")})
            _log(started, "step times")
        if "loss" in parts:
            losses = loss_times(batch, vocab, repeats, chunk_size, precision)
            result.update({"loss_only": losses, "loss_ratio_akd_over_fkl": _ratios(losses, "akd", "fkl"),
                           "loss_ratio_akd_over_plain_ce": _ratios(losses, "akd", "plain_cross_entropy")})
            _log(started, "loss times")
        if "loader" in parts:
            result["loader"] = loader_share(work, cache, tokenizer, loader_layers, loader_steps, tokens, log_every,
                                            precision)
            _log(started, "loader run")
        if "precision" in parts:
            both = step_times(layers, batch, vocab, repeats, chunk_size, precision,
                              variants=("akd_bf16", "akd_float32"))
            result.update({"precision_step": both,
                           "step_ratio_bf16_over_float32": _ratios(both, "akd_bf16", "akd_float32")})
            _log(started, "bf16 against float32")
    result = {
        "setup": {"layers": layers, "batch": list(batch["input_ids"].shape), "k": k, "vocab": QWEN_05B["vocab_size"],
                  "tokenizer_ids": vocab, "chunk_size": chunk_size, "threads": torch.get_num_threads(),
                  "precision": f"float32 master weights, {precision} matmuls, fused AdamW", "repeats": repeats,
                  "machine": machine_facts(),
                  "parts": sorted(parts)},
        **result,
        "goals": {"step_ratio_akd_over_fkl_max": 1.10, "loader_share_max": 0.02},
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "allocator": describe_allocator(),
        "bench_wall_s": time.perf_counter() - started,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
