"""The experiment grid, version 2 (issue 13): its order and dependencies, one budget per student
size computed from the cache, the template / lr / MBPP-base choices, the resumable runner, and a
tiny end-to-end grid killed in the middle and resumed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.settings import option_fields
from distill_cache import random_cache
from eval_folders import give_passing_mbpp_train_answers
from pipeline.cli import main
from stages.distill.config import DistillConfig
from study.grid_v2.budget import BUDGET_FILE, measure_cache, plan_budget
from study.grid_v2.choices import choose_lr, choose_mbpp_base, choose_template
from study.grid_v2.config import ExperimentConfig, save_or_check_config
from study.engine.settings import ExperimentError
from study.grid_v2.plan import build_plan
from study.grid_v2.run import run_grid
from study.engine.runner import step_state
from teacher_data import write_rows

REPO = Path(__file__).resolve().parents[1]
# `akd distill --cache A --cache B --cache-weight W ...` (another branch): until it lands, the two
# arms that mix caches fail at their first step, and only they
MIXING = "cache_weights" in {f.name for _, f in option_fields(DistillConfig)}
MIXED_ARMS = ("akd-mixed", "akd-mbpp")


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _options(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def _choose(root: Path, template="plain", lr=1e-5, base="offpolicy", train_examples=475, micro_batches=216,
            config=None):
    """The choice files and budget.json the later steps' commands read."""
    (root / "choices").mkdir(parents=True, exist_ok=True)
    (root / "choices" / "template.json").write_text(json.dumps({"chosen": template}))
    (root / "choices" / "lr.json").write_text(json.dumps({"chosen": lr}))
    (root / "choices" / "mbpp-base.json").write_text(json.dumps({"chosen": base}))
    budget = plan_budget(config or ExperimentConfig(out_dir=str(root)), train_examples, micro_batches)
    (root / BUDGET_FILE).write_text(json.dumps(budget.to_dict()))
    return budget


def test_the_most_telling_comparison_comes_first_and_every_need_comes_before(tmp_path):
    steps = build_plan(ExperimentConfig(out_dir=str(tmp_path)))
    names = [s.name for s in steps]
    assert names[:7] == ["select-plain", "select-enhanced", "select-enhanced_user", "select-enhanced_explained",
                         "choose-template", "cache-offpolicy", "budget"]
    order = ["choose-lr", "eval-student-test", "train-akd", "eval-akd-test", "rollout", "score-rollouts",
             "train-akd-onpolicy", "eval-akd-onpolicy-test", "train-ce", "train-fkl", "train-rkl",
             "train-akd-mixed", "eval-teacher-train", "verify-mbpp-answers", "cache-mbpp-train",
             "choose-mbpp-base", "train-akd-mbpp", "eval-teacher-test", "prune-small", "eval-small-test",
             "train-small-fkl", "train-small-rkl", "train-small-akd"]
    assert [n for n in names if n in order] == order
    assert all(f"train-sweep-{lr}" in names for lr in ("5e-06", "1e-05", "2e-05"))
    assert names.index("train-sweep-2e-05") < names.index("choose-lr")
    for i, step in enumerate(steps):  # whatever a step needs comes before it
        assert set(step.needs) <= set(names[:i]), step.name
    needs = {s.name: set(s.needs) for s in steps}
    for arm in ("akd", "akd-onpolicy", "ce", "fkl", "rkl", "akd-mixed", "akd-mbpp"):
        assert {"budget", "choose-lr"} <= needs[f"train-{arm}"], arm
    assert "score-rollouts" in needs["train-akd-onpolicy"] and "score-rollouts" in needs["train-akd-mixed"]
    assert needs["choose-mbpp-base"] == {"eval-akd-train", "eval-akd-onpolicy-train"}  # auto
    assert needs["choose-lr"] >= {"eval-student-selection", "eval-sweep-1e-05-selection", "train-sweep-1e-05"}
    # every model that never saw MBPP train is scored on it too; the MBPP-data arm is not
    for model in ("student", "akd", "akd-onpolicy", "ce", "fkl", "rkl", "akd-mixed", "small", "small-akd"):
        assert {f"eval-{model}-test", f"eval-{model}-train"} <= set(names), model
    assert "eval-akd-mbpp-test" in names and "eval-akd-mbpp-train" not in names
    # the fixed-length speed steps come last (added after grid v2 started: nothing finished moves)
    assert names[-3:] == ["speed-teacher", "speed-student", "speed-small"]
    assert needs["speed-small"] == {"prune-small"} and not needs["speed-teacher"] | needs["speed-student"]
    # fixed bases need no evaluation
    fixed = {s.name: s.needs for s in build_plan(ExperimentConfig(out_dir=str(tmp_path), mbpp_base="offpolicy"))}
    assert fixed["choose-mbpp-base"] == () and "score-rollouts" not in fixed["train-akd-mbpp"]


def test_every_arm_of_one_size_gets_the_same_examples_steps_schedule_and_seed(tmp_path):
    config = ExperimentConfig(out_dir=str(tmp_path), seed=7, small_lr=4e-5, distill_options="--threads 2")
    budget = _choose(tmp_path, template="enhanced_user", lr=2e-5, config=config)
    steps = build_plan(config)
    commands = {s.name: s.command() for s in steps if s.command is not None}
    train = {s.meta["model"]: commands[s.name] for s in steps if s.kind == "train"}
    schedule = ("--max-steps", "--warmup-steps", "--grad-accum", "--max-batch-tokens", "--seed", "--lr")

    def of(args):
        return tuple(_option(args, flag) for flag in schedule)

    full = ("akd", "akd-onpolicy", "ce", "fkl", "rkl", "akd-mixed", "akd-mbpp")
    assert {of(train[m]) for m in full} == {(str(budget.full.steps), str(budget.full.warmup_steps), "8", "512",
                                             "7", "2e-05")}
    assert {of(train[m]) for m in ("small-fkl", "small-rkl", "small-akd")} == {
        (str(budget.small.steps), str(budget.small.warmup_steps), "8", "512", "7", "4e-05")}
    assert {of(train[f"sweep-{lr}"])[:5] for lr in ("5e-06", "1e-05", "2e-05")} == {
        (str(budget.sweep.steps), str(budget.sweep.warmup_steps), "8", "512", "7")}
    assert budget.full.steps == 27 and budget.sweep.steps == 9 and budget.small.steps == 42
    assert budget.sequences_per_step >= 16  # 8 micro-batches of ~2.2 sequences
    offpolicy, onpolicy = str(tmp_path / "caches" / "offpolicy"), str(tmp_path / "onpolicy" / "round-1" / "cache")
    mbpp = str(tmp_path / "caches" / "mbpp-train")
    for model in ("akd", "ce", "fkl", "rkl", "small-akd", "sweep-1e-05"):
        assert _options(train[model], "--cache") == [offpolicy] and "--cache-weight" not in train[model]
    assert _options(train["akd-onpolicy"], "--cache") == [onpolicy]
    assert _options(train["akd-mixed"], "--cache") == [onpolicy, offpolicy]
    assert _options(train["akd-mixed"], "--cache-weight") == ["0.5", "0.5"]
    assert _options(train["akd-mbpp"], "--cache") == [offpolicy, mbpp]
    assert _options(train["akd-mbpp"], "--cache-weight") == ["0.7", "0.3"]
    assert all(args[-2:] == ["--threads", "2"] for args in train.values())
    # the smaller student trains from the width-pruned copy and keeps its midpoint checkpoint
    prune = commands["prune-small"]
    assert prune[:2] == ["prune", "qwen2.5-coder-0.5b-instruct"] and _option(prune, "--mlp-keep") == "0.75"
    assert _option(train["small-akd"], "--student") == prune[2]
    assert _option(train["small-akd"], "--checkpoint-every") == str(budget.small_midpoint)
    assert _option(train["small-akd"], "--keep-checkpoints") == "2"
    assert commands["eval-small-akd-mid"][commands["eval-small-akd-mid"].index("--model") + 1].endswith(
        f"checkpoints/step-{budget.small_midpoint:07d}/model")
    # the chosen template makes every teacher cache; rollouts and scoring read the same rows
    for name in ("cache-offpolicy", "score-rollouts", "cache-mbpp-train"):
        assert _option(commands[name], "--teacher-template") == "enhanced_user", name
    assert _option(commands["cache-offpolicy"], "--limit") == _option(commands["rollout"], "--limit") == "500"
    assert _option(commands["score-rollouts"], "--responses-from") == _option(commands["rollout"], "--out")
    assert _option(commands["cache-mbpp-train"], "--responses-from") == "output"
    # the real command line takes every command but the mixing ones (another branch)
    for name, args in commands.items():
        if args[0] == "distill":
            for cache in _options(args, "--cache"):
                Path(cache).mkdir(parents=True, exist_ok=True)
            if "--cache-weight" in args and not MIXING:
                continue
        command = main.commands[args[0]]
        if args[0] == "data":
            command, args = command.commands[args[1]], args[1:]
        command.make_context(args[0], list(args[1:]))
    # choices are made on the selection and train splits, never on test tasks
    splits = {s.name: _option(commands[s.name], "--split") if "--split" in commands[s.name] else "test"
              for s in steps if s.kind in ("eval", "select")}
    assert all(splits[n] == "selection" for n in splits if n.startswith("select-") or n.endswith("-selection"))
    assert splits["eval-teacher-train"] == "train" and splits["eval-akd-train"] == "train"


def test_the_speed_steps_measure_teacher_student_and_pruned_student_at_a_fixed_length(tmp_path):
    from study.engine.profiles import load_profile
    from study.grid_v2.cost import estimate

    config = ExperimentConfig(out_dir=str(tmp_path), backend="hf")
    steps = {s.name: s for s in build_plan(config)}
    small = str(tmp_path / "models" / "qwen2.5-coder-0.5b-instruct-mlp75")
    for model, path in (("teacher", config.teacher), ("student", config.student), ("small", small)):
        step = steps[f"speed-{model}"]
        assert step.kind == "speed" and step.output == tmp_path / "speed" / model
        assert step.command() == ["speed", "--model", path, "--out", str(tmp_path / "speed" / model),
                                  "--backend", "hf", "--models-dir", "models"]
        assert not step.verify()
        (step.output).mkdir(parents=True)
        (step.output / "speed.json").write_text(json.dumps({"prompts": 64, "new_tokens": 256,
                                                            "generated_tokens": 64 * 256 - 1}))
        assert not step.verify()  # a short count is not a fixed-length figure
        (step.output / "speed.json").write_text(json.dumps({"prompts": 64, "new_tokens": 256,
                                                            "generated_tokens": 64 * 256}))
        assert step.verify()
    rows = {r["step"]: r for r in estimate(config, list(steps.values()), profile=load_profile("avx512_bf16"))}
    assert rows["speed-teacher"]["basis"] == "engine + 64 x 256 tokens at 84 tok/s (the evaluation's measured rate)"
    assert rows["speed-teacher"]["minutes"] == round((60 + 64 * 256 / 84) / 60, 1)
    assert rows["speed-small"]["minutes"] == rows["speed-student"]["minutes"] == round((60 + 64 * 256 / 609) / 60, 1)
    no_small = [s.name for s in build_plan(ExperimentConfig(out_dir=str(tmp_path), small_losses=""))]
    assert no_small[-2:] == ["speed-teacher", "speed-student"] and "speed-small" not in no_small


def test_cost_figures_are_a_cpu_class_profile_completed_from_the_reference():
    from study.engine.profiles import REFERENCE_CLASS, load_profile

    reference, avx2, other = load_profile(REFERENCE_CLASS), load_profile("avx2"), load_profile("riscv")
    assert reference.borrowed() == [] and reference["engine_s"] == 60.0
    assert avx2["engine_s"] == 60.0 and avx2["train_s_per_micro_batch"]["full"] == 24.7
    # a model not measured on the class: the reference's figure times the ratio measured for another
    assert avx2["train_s_per_micro_batch"]["small"] == pytest.approx(3.41 * 24.7 / 3.75, abs=1e-3)
    assert avx2["eval_s_per_task"] == pytest.approx({"teacher": 1.6 * 3.6 / 0.75, "full": 3.6,
                                                     "small": 0.95 * 3.6 / 0.75}, abs=1e-3)
    assert "small not measured here" in avx2.sources["train_s_per_micro_batch"]
    assert "heldout_eval_s" in avx2.borrowed() and "engine_s" not in avx2.borrowed()
    assert avx2.sources["prune_s"].startswith("not measured on avx2; avx512_bf16's: ")
    assert other.figures == reference.figures and set(other.borrowed()) == set(reference.figures)


def test_the_budget_is_one_pass_of_batches_of_at_least_16_sequences(tmp_path):
    config = ExperimentConfig(out_dir=str(tmp_path), batch_sequences=16, epochs=1.0, small_epochs=1.5)
    budget = plan_budget(config, train_examples=475, micro_batches=216)
    assert budget.grad_accum == 8 and budget.sequences_per_step == pytest.approx(17.59, abs=0.01)
    assert budget.full.steps * budget.grad_accum >= 216  # at least one full pass
    assert budget.small.steps * budget.grad_accum >= 1.5 * 216 and budget.small.steps % 2 == 0
    assert budget.small_midpoint * 2 == budget.small.steps
    assert budget.sweep.eval_every == budget.sweep.steps  # judged on its last held-out check
    with pytest.raises(ExperimentError, match="nothing to train on"):
        plan_budget(config, 0, 0)
    # measured on a cache: its training slice, packed as the trainer packs it
    from stages.distill.config import BatchingConfig
    from stages.distill.data import MixedBatches, is_held_out
    from stages.distill.mixing import open_mix

    cache = random_cache(tmp_path / "cache", examples=300, rows_per_shard=50, prompt_len=(4, 20),
                         response_len=(5, 40))
    config = ExperimentConfig(out_dir=str(tmp_path), max_batch_tokens=128,
                              distill_options="--max-seq-len 64 --eval-fraction 0.1")
    examples, micro = measure_cache(cache, config)
    from cache_schema import CacheReader

    assert examples == sum(not is_held_out(r.example_id, 0.1) for r in CacheReader(cache).iter_examples())
    stream = MixedBatches(open_mix([cache]), BatchingConfig(max_batch_tokens=128, max_seq_len=64,
                                                            eval_fraction=0.1))
    real, seen = 0, 0  # the stream is endless: count the batches of one pass over the examples
    for item in stream:
        if seen >= examples:
            break
        real += item["batch"] is not None
        seen += sum(c.get("examples", 0) for c in item["counts"])
    assert abs(micro - real) <= 0.05 * real, (micro, real)


def _passes(pattern: str) -> dict[str, bool]:
    return {f"t{i}": c == "1" for i, c in enumerate(pattern)}


def test_the_template_is_the_best_of_all_and_plain_wins_unless_beaten():
    plain_wins = choose_template({"plain": _passes("1110"), "enhanced": _passes("1100"),
                                  "enhanced_user": _passes("0111")}, "selection")
    assert plain_wins["chosen"] == "plain" and not plain_wins["enhanced_beats_plain"]
    assert plain_wins["best_enhanced"] == "enhanced_user"  # a tie with plain: plain stays
    assert "no enhanced template beats plain" in plain_wins["reason"] and "uses plain" in plain_wins["reason"]
    beaten = choose_template({"plain": _passes("1000"), "enhanced": _passes("1100"),
                              "enhanced_user": _passes("0110")}, "selection")
    assert beaten["chosen"] == "enhanced" and beaten["enhanced_beats_plain"]  # the first of a tie
    assert beaten["pass@1"] == {"plain": 0.25, "enhanced": 0.5, "enhanced_user": 0.5}
    assert beaten["best_enhanced_vs_plain"]["only_a"] == 1
    assert choose_template({"plain": _passes("10")}, "selection")["chosen"] == "plain"


def test_the_lr_is_the_lowest_heldout_fkl_among_those_not_significantly_worse_on_selection():
    good = "1" * 60 + "0" * 40
    runs = {5e-6: {"passes": _passes(good), "heldout_fkl": 0.09},
            1e-5: {"passes": _passes("1" * 58 + "0" * 42), "heldout_fkl": 0.07},
            2e-5: {"passes": _passes("0" * 100), "heldout_fkl": 0.05}}  # lowest FKL, broken on tasks
    choice = choose_lr(runs, "selection", guard=0.05, student=_passes(good))
    assert choice["chosen"] == 1e-5 and list(choice["ruled_out"]) == ["2e-05"]
    assert "lowest held-out FKL (0.0700)" in choice["reason"] and "ruled out" in choice["reason"]
    assert choice["pass@1"]["5e-06"] == 0.6 and choice["student_pass@1"] == 0.6
    assert choice["chosen_vs_student"]["diff"] == pytest.approx(-0.02)
    no_fkl = {lr: {**run, "heldout_fkl": None} for lr, run in runs.items()}
    assert choose_lr(no_fkl, "selection", guard=0.05)["chosen"] == 5e-6  # the highest pass@1


def test_the_mbpp_arm_builds_on_the_akd_arm_that_passed_more_mbpp_train_tasks():
    assert choose_mbpp_base("auto", _passes("1100"), _passes("1110"))["chosen"] == "onpolicy"
    assert choose_mbpp_base("auto", _passes("1100"), _passes("1010"))["chosen"] == "offpolicy"  # a tie
    assert choose_mbpp_base("onpolicy", None, None)["chosen"] == "onpolicy"
    with pytest.raises(ExperimentError, match="needs both AKD arms"):
        choose_mbpp_base("auto", None, _passes("1"))


def test_settings_are_checked_and_a_changed_grid_is_refused(tmp_path):
    with pytest.raises(ExperimentError, match="must include 'plain'"):
        ExperimentConfig(templates="enhanced,enhanced_user")
    with pytest.raises(ExperimentError, match="--lr-sweep must be comma-separated numbers"):
        ExperimentConfig(lr_sweep="1e-5,fast")
    with pytest.raises(ExperimentError, match="--mbpp-weight must be in"):
        ExperimentConfig(mbpp_weight=1.0)
    save_or_check_config(ExperimentConfig(out_dir=str(tmp_path)))
    save_or_check_config(ExperimentConfig(out_dir=str(tmp_path)))  # same settings: fine
    with pytest.raises(ExperimentError, match="small_lr: the grid in place has 1e-05, this command has 2e-05"):
        save_or_check_config(ExperimentConfig(out_dir=str(tmp_path), small_lr=2e-5))
    saved = json.loads((tmp_path / "experiment.json").read_text())
    del saved["mbpp_weight"]  # a setting added after the grid started reads as its default there
    (tmp_path / "experiment.json").write_text(json.dumps(saved))
    save_or_check_config(ExperimentConfig(out_dir=str(tmp_path)))


def test_a_failed_step_blocks_only_what_needs_it_and_reruns_next_time(tmp_path, monkeypatch):
    root = tmp_path / "grid"
    config = ExperimentConfig(out_dir=str(root), templates="plain,enhanced", keep_dir=str(tmp_path / "kept"))

    def fake_run(args, log_path):  # the runner's process launcher, not a stage
        return (1 if "selection/enhanced" in " ".join(args) else 0), 0.1

    monkeypatch.setattr("study.engine.runner._run_command", fake_run)
    states = run_grid(config, only="select-", echo=lambda line: None)
    assert states["select-enhanced"] == "failed" and states["choose-template"] == "pending"
    states = run_grid(config, only="choose", echo=lambda line: None)
    assert states["choose-template"] == "blocked" and states["choose-lr"] == "blocked"
    log = (root / "experiment.log").read_text()
    assert "blocked choose-template: needs select-plain, select-enhanced" in log
    step = next(s for s in build_plan(config) if s.name == "select-enhanced")
    assert step_state(root, step) == "failed"


@pytest.mark.slow
def test_a_tiny_grid_killed_in_the_middle_resumes_to_a_full_report(tiny_models, tmp_path):
    teacher, student = tiny_models
    data = tmp_path / "data.jsonl"
    write_rows(data)
    out = tmp_path / "grid"
    args = [sys.executable, "-m", "pipeline.cli", "experiment", "run", "--out-dir", str(out),
            "--teacher", str(teacher), "--student", str(student), "--dataset", str(data),
            "--templates", "plain,enhanced", "--n-examples", "22", "--k", "8", "--cache-max-new-tokens", "8",
            "--batch-sequences", "4", "--max-batch-tokens", "1024", "--lr-sweep", "1e-4,1e-3", "--losses", "fkl",
            "--small-losses", "akd", "--distill-options",
            # MBPP prompts with their asserts run to several hundred tiny-tokenizer tokens: 1,024
            # lets the MBPP-train arm's verified answers into training
            "--max-seq-len 1024 --eval-fraction 0.5 --precision float32 --threads 1 --final-dtype float32 --no-plots",
            "--eval-limit", "4", "--eval-max-new-tokens", "16", "--backend", "hf", "--keep-dir", str(tmp_path / "kept")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(args + ["--only", "eval-teacher-train"], cwd=REPO, env=env, check=True, capture_output=True)
    give_passing_mbpp_train_answers(out / "evals" / "teacher" / "train")

    runner = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "experiment.log"
    deadline = time.time() + 1800  # a bound on a hang only: a busy 2-core machine took over 900 s to get here
    while "start eval-akd-onpolicy-test" not in (log.read_text() if log.exists() else ""):
        assert runner.poll() is None and time.time() < deadline, "the grid stopped before the kill"
        time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    killed = json.loads((out / "steps" / "eval-akd-onpolicy-test.json").read_text())
    assert killed["status"] == "running"
    before = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    # the teacher's MBPP-train evaluation re-scores its canned answers later in the plan
    done_before = {n for n, r in before.items() if r["status"] == "done"} - {"eval-teacher-train"}
    assert {"train-akd", "train-akd-onpolicy", "choose-lr", "budget"} <= done_before

    status = subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "status", "--out-dir", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    assert "pending  eval-akd-onpolicy-test" in status and "done     cache-offpolicy" in status

    resumed = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    after = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    mixing = {n for n in after if any(n == f"train-{arm}" for arm in MIXED_ARMS)}
    expected_failed = set() if MIXING else mixing
    assert resumed.returncode == (0 if MIXING else 1)
    assert {n for n, r in after.items() if r["status"] != "done"} == expected_failed
    for name in done_before:  # finished steps were not run again
        assert after[name]["started"] == before[name]["started"], name
    assert after["eval-akd-onpolicy-test"]["started"] != killed["started"]

    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "report", "--out-dir", str(out),
                    "--results", str(results)], cwd=REPO, env=env, check=True, capture_output=True)
    report = json.loads((results / "report.json").read_text())
    scored = {"teacher", "student", "akd", "akd-onpolicy", "fkl", "small", "small-akd"}
    assert scored <= {row["name"] for row in report["table"]}
    pooled = {(r["a"], r["b"]): r["benchmarks"] for r in report["significance"]}
    assert pooled[("akd", "student")] == ["humaneval", "mbpp", "mbpp_train"]
    assert pooled[("akd-onpolicy", "akd")] == ["humaneval", "mbpp", "mbpp_train"]
    assert ("small-akd", "small") in pooled and ("akd", "fkl") in pooled
    assert [a["open"] for a in report["answers"]] == [False] * 5
    assert report["choices"]["template"]["chosen"] in ("plain", "enhanced")
    assert report["choices"]["lr"]["chosen"] in (1e-4, 1e-3)
    assert report["choices"]["mbpp_answers"]["kept"] == 4  # the canned reference answers all pass
    assert report["plan"]["budget_measured"] and report["plan"]["budget"]["grad_accum"] >= 1
    recovery = report["recovery"][0]
    assert recovery["run"] == "small-akd" and [p["step"] for p in recovery["pass@1"]] == [0, 2, 4]
    assert len(recovery["curve"]) >= 3
    assert {"student", "akd", "small-akd", "small-akd-mid", "teacher-plain", "sweep-0.001"} <= set(report["samples"])
    assert report["samples"]["student"] == ["humaneval.jsonl.gz", "mbpp.jsonl.gz", "mbpp_selection.jsonl.gz",
                                            "mbpp_train.jsonl.gz"]
    assert not list((out / "runs").glob("*/*/checkpoints")), "a finished run kept its resume checkpoint"
    attempts = {row["step"]: row["attempts"] for row in report["costs"]}
    assert attempts["eval-akd-onpolicy-test"] == 2 and attempts["eval-student-test"] == 1
    assert all(row["machine"] for row in report["costs"])  # every step says which machine ran it
    markdown = (results / "report.md").read_text()
    first = markdown.split("\n## ")[0]
    assert first.count("- **") == 5 and ("Partial report" in markdown) != MIXING
    assert "| machine | notes |" in markdown and "\n- M1: " in markdown
    assert all((results / f).stat().st_size > 1000 for f in
               ("pass_at_1.png", "training_curves.png", "size_speed.png", "recovery.png"))
    speed = {r["model"]: r for r in report["speed"]}  # `akd speed`'s fixed-length figure, not the eval's
    assert {"teacher", "student", "small", "small-akd"} <= set(speed)
    for model in ("teacher", "student", "small"):
        record = json.loads((out / "speed" / model / "speed.json").read_text())
        assert record["generated_tokens"] == 64 * 256 and record["backend"] == "hf"
        assert speed[model]["speed_basis"] == "fixed-length" and speed[model]["tokens_per_s"] == record["tokens_per_s"]
    assert speed["small-akd"]["speed_from"] == "small"
    assert "at a fixed length, 64 prompts x 256 tokens" in report["answers"][4]["answer"]
    assert json.loads((out / "models" / "student-mlp75" / "akd-prune.json").read_text())["method"] == "width"

    # a fresh clone holds only the keep folder: nothing finished runs again, the report is the same
    shutil.rmtree(out)
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == (0 if MIXING else 1), again.stdout[-2000:]
    restored = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    assert {n: r["started"] for n, r in restored.items() if n not in expected_failed} == {
        n: r["started"] for n, r in after.items() if n not in expected_failed}
    assert not list((out / "runs").glob("*/*/final")), "weights were kept or a run was trained again"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "report", "--out-dir", str(out),
                    "--results", str(results)], cwd=REPO, env=env, check=True, capture_output=True)
    again_report = json.loads((results / "report.json").read_text())
    assert again_report["table"] == report["table"] and again_report["answers"] == report["answers"]
