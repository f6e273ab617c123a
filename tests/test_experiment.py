"""The experiment grid (issue 5): its plan, its template choice, its resumable runner, and
a tiny end-to-end grid killed in the middle and resumed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.config import ExperimentConfig, ExperimentError, save_or_check_config
from study.plan import build_plan, choose_template
from study.runner import run_grid, step_state
from teacher_data import write_rows

REPO = Path(__file__).resolve().parents[1]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_plan_orders_the_grid_and_gives_every_student_the_same_budget(tmp_path):
    config = ExperimentConfig(out_dir=str(tmp_path), max_steps=77, lr=3e-6, pruned_lr=4e-5, seed=5)
    steps = build_plan(config)
    names = [s.name for s in steps]
    assert names[:5] == ["select-plain", "select-enhanced", "select-enhanced_user",
                         "select-enhanced_explained", "choose-template"]
    for loss in ("ce", "fkl", "rkl", "akd"):
        assert f"train-enhanced-qwen2.5-coder-0.5b-instruct-{loss}" in names
    for loss in ("fkl", "rkl", "akd"):
        assert f"train-enhanced-qwen2.5-coder-0.5b-instruct-half-{loss}" in names
    assert "train-plain-qwen2.5-coder-0.5b-instruct-akd" in names
    assert {"eval-teacher", "eval-teacher-enhanced", "eval-student", "eval-student-pruned"} <= set(names)
    for i, step in enumerate(steps):  # whatever a step needs comes before it
        assert set(step.needs) <= set(names[:i]), step.name
    (tmp_path / "selection").mkdir()
    (tmp_path / "selection" / "choice.json").write_text(json.dumps({"chosen": "enhanced_user"}))
    command = {s.name: s.command() for s in steps if s.command is not None}
    assert _option(command["cache-enhanced"], "--teacher-template") == "enhanced_user"
    assert _option(command["cache-plain"], "--teacher-template") == "plain"
    assert _option(command["eval-teacher-enhanced"], "--template") == "enhanced_user"
    assert "--template" not in command["eval-teacher"]
    assert _option(command["cache-enhanced"], "--limit") == _option(command["cache-plain"], "--limit") == "1000"
    trains = [s.command() for s in steps if s.kind == "train"]
    assert len(trains) == 8
    full = [t for t in trains if not _option(t, "--student").endswith("-half")]
    half = [t for t in trains if _option(t, "--student").endswith("-half")]
    assert len(full) == 5 and len(half) == 3  # one budget per student size
    assert {(_option(t, "--max-steps"), _option(t, "--lr"), _option(t, "--seed")) for t in full} == {
        ("77", "3e-06", "5")}
    assert {(_option(t, "--max-steps"), _option(t, "--lr"), _option(t, "--seed")) for t in half} == {
        ("77", "4e-05", "5")}
    evals = [s for s in steps if s.kind == "eval"]
    assert all(_option(s.command(), "--split") == "test" for s in evals)
    selection = [s.command() for s in steps if s.kind == "select"]
    assert all(_option(c, "--split") == "selection" for c in selection)
    assert "--template" not in selection[0] and _option(selection[1], "--template") == "enhanced"


def test_settings_are_checked_and_a_changed_grid_is_refused(tmp_path):
    with pytest.raises(ExperimentError, match="must include 'plain'"):
        ExperimentConfig(templates="enhanced,enhanced_user")
    with pytest.raises(ExperimentError, match="--max-steps must be >= 1"):
        ExperimentConfig(max_steps=0)
    save_or_check_config(ExperimentConfig(out_dir=str(tmp_path)))
    save_or_check_config(ExperimentConfig(out_dir=str(tmp_path)))  # same settings: fine
    with pytest.raises(ExperimentError, match="lr: the grid in place has 2e-06, this command has 1e-05"):
        save_or_check_config(ExperimentConfig(out_dir=str(tmp_path), lr=1e-5))
    # a setting added after the grid started reads as its default there
    saved = json.loads((tmp_path / "experiment.json").read_text())
    del saved["pruned_lr"]
    (tmp_path / "experiment.json").write_text(json.dumps(saved))
    save_or_check_config(ExperimentConfig(out_dir=str(tmp_path)))
    with pytest.raises(ExperimentError, match="pruned_lr"):
        save_or_check_config(ExperimentConfig(out_dir=str(tmp_path), pruned_lr=1e-3))


def _fake_selection(root: Path, template: str, passed: list[bool]) -> None:
    folder = root / "selection" / template
    (folder / "mbpp").mkdir(parents=True)
    rows = [{"task_id": f"Mbpp/{i}", "statuses": ["passed" if ok else "failed"]} for i, ok in enumerate(passed)]
    (folder / "mbpp" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    score = sum(passed) / len(passed)
    (folder / "summary.json").write_text(json.dumps({"split": "selection", "benchmarks": {"mbpp": {"pass@1": score}}}))


def test_the_best_non_plain_template_is_chosen_and_compared_with_plain(tmp_path):
    config = ExperimentConfig(out_dir=str(tmp_path), templates="plain,enhanced,enhanced_user")
    _fake_selection(tmp_path, "plain", [True] * 30 + [False] * 10)
    _fake_selection(tmp_path, "enhanced", [True] * 20 + [False] * 20)
    _fake_selection(tmp_path, "enhanced_user", [True] * 25 + [False] * 15)
    choice = choose_template(config, tmp_path / "choice.json")
    assert choice["chosen"] == "enhanced_user" and not choice["beats_plain"]
    assert choice["pass@1"] == {"plain": 0.75, "enhanced": 0.5, "enhanced_user": 0.625}
    assert choice["chosen_vs_plain"]["only_b"] == 5 and choice["chosen_vs_plain"]["only_a"] == 0
    assert json.loads((tmp_path / "choice.json").read_text()) == choice
    # a tie goes to the candidate listed first
    _fake_selection(tmp_path / "tie", "plain", [False] * 4)
    _fake_selection(tmp_path / "tie", "enhanced", [True, False, False, False])
    _fake_selection(tmp_path / "tie", "enhanced_user", [False, True, False, False])
    tie = ExperimentConfig(out_dir=str(tmp_path / "tie"), templates="plain,enhanced,enhanced_user")
    assert choose_template(tie, tmp_path / "tie.json")["chosen"] == "enhanced"


def test_a_failed_step_blocks_only_what_needs_it_and_reruns_next_time(tmp_path, monkeypatch):
    config = ExperimentConfig(out_dir=str(tmp_path), templates="plain,enhanced")
    calls = []

    def fake_run(args, log_path):  # the runner's process launcher, not a stage
        calls.append(args[0] + ":" + args[args.index("--out") + 1] if "--out" in args else args[0])
        return (1 if "selection/enhanced" in calls[-1] else 0), 0.1

    monkeypatch.setattr("study.runner._run_command", fake_run)
    states = run_grid(config, only="select-", echo=lambda line: None)
    assert states["select-enhanced"] == "failed" and states["choose-template"] == "pending"
    states = run_grid(config, only="choose", echo=lambda line: None)
    assert states["choose-template"] == "blocked"
    log = (tmp_path / "experiment.log").read_text()
    assert "FAILED select-enhanced" in log and "blocked choose-template: needs select-plain, select-enhanced" in log
    step = next(s for s in build_plan(config) if s.name == "select-enhanced")
    assert step_state(tmp_path, step) == "failed"


@pytest.mark.slow
def test_a_tiny_grid_killed_in_the_middle_resumes_to_a_full_report(tiny_models, tmp_path):
    teacher, student = tiny_models
    data = tmp_path / "data.jsonl"
    write_rows(data)
    out = tmp_path / "grid"
    args = [sys.executable, "-m", "pipeline.cli", "experiment", "run", "--out-dir", str(out),
            "--teacher", str(teacher), "--student", str(student), "--dataset", str(data),
            "--templates", "plain,enhanced", "--n-examples", "22", "--k", "8",
            "--cache-max-new-tokens", "8", "--enhanced-losses", "ce,akd", "--plain-losses", "akd",
            "--pruned-losses", "akd", "--max-steps", "2", "--lr", "1e-3", "--distill-options",
            "--max-batch-tokens 128 --max-seq-len 128 --eval-fraction 0.5 --no-bf16 --warmup-steps 0 "
            "--threads 1 --final-dtype float32 --no-plots",
            "--eval-limit", "2", "--eval-max-new-tokens", "16", "--backend", "hf"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    runner = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "experiment.log"
    deadline = time.time() + 600
    while "start eval-enhanced-student-ce" not in (log.read_text() if log.exists() else ""):
        assert runner.poll() is None and time.time() < deadline, "the grid stopped before the kill"
        time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    killed = json.loads((out / "steps" / "eval-enhanced-student-ce.json").read_text())
    assert killed["status"] == "running"
    before = {p.name: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    done_before = {n for n, r in before.items() if r["status"] == "done"}
    assert "train-enhanced-student-ce.json" in done_before

    status = subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "status", "--out-dir", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    assert "pending  eval-enhanced-student-ce" in status and "done     cache-enhanced" in status

    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)
    after = {p.name: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    assert len(after) == 18 and all(r["status"] == "done" for r in after.values())
    for name in done_before:  # finished steps were not run again
        assert after[name]["started"] == before[name]["started"], name
    assert after["eval-enhanced-student-ce.json"]["started"] != killed["started"]

    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "report", "--out-dir", str(out),
                    "--results", str(results)], cwd=REPO, env=env, check=True, capture_output=True)
    report = json.loads((results / "report.json").read_text())
    assert report["progress"]["pending"] == []
    assert {row["name"] for row in report["table"]} == {
        "teacher", "student", "student-pruned", "enhanced-student-ce", "enhanced-student-akd",
        "plain-student-akd", "enhanced-student-half-akd"}
    assert {(r["a"], r["b"]) for r in report["significance"]} >= {
        ("enhanced-student-akd", "student"), ("enhanced-student-akd", "enhanced-student-ce"),
        ("enhanced-student-akd", "plain-student-akd"), ("enhanced-student-half-akd", "student-pruned")}
    assert {r["run"] for r in report["fidelity"]} == {
        "enhanced-student-ce", "enhanced-student-akd", "plain-student-akd", "enhanced-student-half-akd"}
    assert report["selection"]["chosen"] == "enhanced"
    assert not list((out / "runs").glob("*/*/checkpoints")), "a finished run kept its resume checkpoint"
    assert len(list((out / "runs").glob("*/*/final/config.json"))) == 4
    attempts = {row["step"]: row["attempts"] for row in report["costs"]}
    assert attempts["eval-enhanced-student-ce"] == 2 and attempts["eval-teacher"] == 1
    assert len(report["commands"]) == 17  # every step but the in-process choice
    markdown = (results / "report.md").read_text()
    assert "Partial report" not in markdown and "## Are the differences real?" in markdown
    assert all((results / f).stat().st_size > 1000 for f in ("pass_at_1.png", "training_curves.png", "head_weight.png"))
    assert json.loads((out / "models" / "student-half" / "akd-prune.json").read_text())["kept_layers"] == [0]
