"""A grid outlives its machine: finished steps' small outputs go to a keep folder (git), a fresh
clone copies them back, and a run whose weights are gone is trained again only when needed."""
import json
from pathlib import Path

import pytest

import study.engine.keep
from study.engine.keep import KeepError, keep, kept_files, restore
from study.engine.runner import run_steps, step_state
from study.engine.steps import Step


def _train_and_eval(root: Path, calls: list[str]) -> list[Step]:
    """Two steps shaped like the grid's: a run (weights + summary) and an evaluation of its weights."""
    run, scores = root / "runs" / "akd", root / "evals" / "akd" / "summary.json"

    def train():
        calls.append("train")
        (run / "final").mkdir(parents=True, exist_ok=True)
        (run / "final" / "model.safetensors").write_bytes(b"weights")
        (run / "checkpoints").mkdir(exist_ok=True)
        (run / "checkpoints" / "optimizer.pt").write_bytes(b"state")
        (run / "summary.json").write_text(json.dumps({"steps": 3}))

    def evaluate():
        calls.append("eval")
        assert (run / "final" / "model.safetensors").read_bytes() == b"weights", "evaluated missing weights"
        scores.parent.mkdir(parents=True, exist_ok=True)
        scores.write_text(json.dumps({"pass@1": 0.5}))

    return [Step("train-akd", "train", run, action=train, verify=lambda: (run / "final").is_dir(),
                 kept=lambda: (run / "summary.json").exists()),
            Step("eval-akd-test", "eval", scores.parent, needs=("train-akd",), action=evaluate,
                 verify=scores.exists)]


def test_kept_files_leave_out_weights_checkpoints_and_temporaries(tmp_path):
    run = tmp_path / "run"
    for name in ("summary.json", "metrics.jsonl", "final/config.json", "checkpoints/step-1/x.json",
                 "model.safetensors", "adapter.bin", ".tmp-shard.parquet", "shards/part-0.parquet"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    assert [f.relative_to(run).as_posix() for f in kept_files(run)] == [
        "metrics.jsonl", "shards/part-0.parquet", "summary.json"]
    assert kept_files(run / "model.safetensors") == [] and kept_files(run / "summary.json") == [run / "summary.json"]


def test_a_file_too_large_for_git_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(study.engine.keep, "MAX_KEPT_MB", 1)
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "big.parquet").write_bytes(b"0" * (2 * 2**20))
    with pytest.raises(KeepError, match=r"big.parquet is 2 MB as kept, over the 1 MB"):
        keep(tmp_path / "grid", tmp_path / "kept", [tmp_path / "grid"])
    assert not (tmp_path / "kept").exists()


def test_restore_fills_in_what_is_missing_and_never_overwrites_the_live_copy(tmp_path):
    kept, root = tmp_path / "kept", tmp_path / "grid"
    for name, text in (("a.json", "kept a"), ("sub/b.json", "kept b")):
        (kept / name).parent.mkdir(parents=True, exist_ok=True)
        (kept / name).write_text(text)
    root.mkdir()
    (root / "a.json").write_text("live a")
    assert restore(kept, root) == 1
    assert (root / "a.json").read_text() == "live a" and (root / "sub" / "b.json").read_text() == "kept b"
    assert restore(tmp_path / "nowhere", root) == 0


def test_a_fresh_machine_resumes_from_the_keep_folder_and_retrains_only_for_a_step_to_run(tmp_path):
    kept, calls = tmp_path / "kept", []
    first = tmp_path / "machine-1"
    states = run_steps(first, _train_and_eval(first, calls), keep_dir=kept, echo=lambda line: None)
    assert states == {"train-akd": "done", "eval-akd-test": "done"} and calls == ["train", "eval"]
    assert json.loads((kept / "steps" / "train-akd.json").read_text())["machine"]["cores"] >= 1
    assert sorted(f.relative_to(kept).as_posix() for f in kept_files(kept)) == [
        "evals/akd/summary.json", "runs/akd/summary.json", "steps/eval-akd-test.json", "steps/train-akd.json"]
    # (action steps write no log; a command step's log is kept beside its record)

    # a fresh clone: the kept files come back; the run has no weights but nothing needs them
    second = tmp_path / "machine-2"
    assert restore(kept, second) == 4
    steps = _train_and_eval(second, calls)
    assert [step_state(second, s) for s in steps] == ["done", "done"]
    assert run_steps(second, steps, keep_dir=kept, echo=lambda line: None) == states
    assert calls == ["train", "eval"], "a finished step ran again"

    # the evaluation is lost (it had not finished on that machine): the run is trained again first
    third = tmp_path / "machine-3"
    restore(kept, third)
    (third / "steps" / "eval-akd-test.json").unlink()
    steps = _train_and_eval(third, calls)
    assert run_steps(third, steps, keep_dir=kept, echo=lambda line: None) == states
    assert calls == ["train", "eval", "train", "eval"]
    assert "rebuild train-akd: eval-akd-test need its output, which is gone" in (third / "experiment.log").read_text()
    # `only` that leaves the evaluation out does not retrain either
    fourth = tmp_path / "machine-4"
    restore(kept, fourth)
    (fourth / "steps" / "eval-akd-test.json").unlink()
    run_steps(fourth, _train_and_eval(fourth, calls), only="train", keep_dir=kept, echo=lambda line: None)
    assert calls == ["train", "eval", "train", "eval"]


def test_nothing_is_restored_into_a_grid_a_runner_is_working_on(tmp_path):
    from study.engine.runner import root_lock
    from study.grid_v2.run import restore_grid

    kept, root = tmp_path / "kept", tmp_path / "grid"
    (kept / "runs" / "akd").mkdir(parents=True)
    (kept / "runs" / "akd" / "metrics.jsonl").write_text("{}\n")
    with root_lock(root):  # a run being trained again must not get its old metrics back
        assert restore_grid(kept, root) == 0
    assert not (root / "runs").exists()
    (kept / "experiment.json").write_text("{}")
    assert restore_grid(kept, root) == 2 and (root / "runs" / "akd" / "metrics.jsonl").exists()
    assert restore_grid(tmp_path / "nowhere", tmp_path / "other") == 0 and not (tmp_path / "other").exists()


def test_a_grid_already_here_gets_nothing_back_and_a_cut_restore_is_finished(tmp_path):
    from study.grid_v2.run import restore_grid

    kept, root = tmp_path / "kept", tmp_path / "grid"
    for name in ("experiment.json", "evals/a/summary.json", "steps/eval-a.json"):
        (kept / name).parent.mkdir(parents=True, exist_ok=True)
        (kept / name).write_text("{}")
    (root / "steps").mkdir(parents=True)
    (root / "steps" / "eval-a.json").write_text("{}")  # a restore stopped before the settings file
    assert restore_grid(kept, root) == 2 and (root / "experiment.json").exists()
    (root / "evals" / "a" / "summary.json").unlink()  # deleted on purpose, to be scored again
    assert restore_grid(kept, root) == 0 and not (root / "evals" / "a" / "summary.json").exists()


def test_an_unfinished_evaluations_answers_are_kept_for_the_next_machine_and_dropped_once_it_finishes(tmp_path):
    from dataclasses import dataclass

    from stages.evaluate.answer_journal import PARTIAL_FILE
    from study.engine.experiment import keep_experiment

    root, kept = tmp_path / "grid", tmp_path / "kept"
    out = root / "evals" / "avx512_bf16" / "akd" / "test-sampled"
    summary = out / "summary.json"

    def evaluate():
        (out / "humaneval" / PARTIAL_FILE).unlink()
        (out / "humaneval" / "generations.jsonl").write_text('{"task_id": "HumanEval/0"}\n')
        summary.write_text("{}")

    steps = [Step("eval-akd-test-sampled@avx512_bf16", "eval", out, action=evaluate, verify=summary.exists)]

    @dataclass(frozen=True)
    class Config:
        out_dir: str
        keep_dir: str

    config = Config(str(root), str(kept))
    (out / "humaneval").mkdir(parents=True)
    (out / "humaneval" / PARTIAL_FILE).write_text('{"settings": {}}\n{"call": 0, "elapsed_s": 1.0, "record": {}}\n')
    (root / "experiment.json").write_text("{}")
    assert keep_experiment(config, lambda c: steps, "experiment.json") == 2  # the settings and the answers so far
    partial = kept / out.relative_to(root) / "humaneval" / PARTIAL_FILE
    assert partial.exists() and not (kept / "steps").exists()  # no record: the step is not done

    fresh = tmp_path / "machine-2"  # a machine of the same class resumes from them
    assert restore(kept, fresh) == 2 and (fresh / partial.relative_to(kept)).exists()

    assert run_steps(root, steps, keep_dir=kept, echo=lambda line: None) == {steps[0].name: "done"}
    assert not partial.exists() and (partial.parent / "generations.jsonl").exists()  # finished: the journal goes


def test_large_text_files_are_kept_packed_and_come_back_byte_for_byte(tmp_path):
    from stages.evaluate.answer_journal import PARTIAL_FILE
    from study.engine.keep import PACK_MIN_BYTES, PACKED, forget_partial_answers

    root, kept = tmp_path / "grid", tmp_path / "kept"
    out = root / "evals" / "akd" / "test-sampled" / "mbpp"
    out.mkdir(parents=True)
    answers = "".join(f'{{"task_id": "Mbpp/{i}", "text": "def f():\\n    return {i}"}}\n' for i in range(3000))
    assert len(answers) > PACK_MIN_BYTES
    (out / "generations.jsonl").write_text(answers)
    (out / "summary.json").write_text('{"pass@1": 0.5}')
    (out / "tiny.jsonl").write_text('{"a": 1}\n')  # too small to be worth packing
    (kept / "evals" / "akd" / "test-sampled" / "mbpp").mkdir(parents=True)
    (kept / "evals" / "akd" / "test-sampled" / "mbpp" / "generations.jsonl").write_text("kept before packing")
    assert keep(root, kept, [root / "evals"]) == 3
    mirror = kept / "evals" / "akd" / "test-sampled" / "mbpp"
    assert sorted(p.name for p in mirror.iterdir()) == ["generations.jsonl" + PACKED, "summary.json", "tiny.jsonl"]
    assert (mirror / ("generations.jsonl" + PACKED)).stat().st_size < len(answers) / 4
    assert keep(root, kept, [root / "evals"]) == 0  # unchanged: nothing written again
    fresh = tmp_path / "machine-2"
    assert restore(kept, fresh) == 3
    assert (fresh / out.relative_to(root) / "generations.jsonl").read_text() == answers
    assert not list(fresh.rglob("*" + PACKED)) and not list(fresh.rglob(".*"))

    journal = out / PARTIAL_FILE  # an unfinished evaluation's answers: packed too, and dropped once it finishes
    journal.write_text(answers)
    keep(root, kept, [root / "evals"])
    assert (mirror / (PARTIAL_FILE + PACKED)).exists()
    journal.unlink()
    assert forget_partial_answers(root, kept, root / "evals") == 1 and not (mirror / (PARTIAL_FILE + PACKED)).exists()


def test_a_step_whose_runner_was_killed_reads_pending_while_another_runner_works(tmp_path):
    """A session's end kills the runner mid-step; the next runner's status must not show that step running."""
    import os
    import subprocess
    import sys

    from study.engine.runner import root_lock

    root = tmp_path / "grid"
    step = Step("eval-akd-test", "eval", root / "evals" / "akd", verify=lambda: False)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (root / "steps").mkdir(parents=True)

    def record(pid: int) -> None:
        (root / "steps" / "eval-akd-test.json").write_text(json.dumps({"name": step.name, "status": "running",
                                                                       "pid": pid}))

    record(int(gone.stdout))  # its process has exited
    with root_lock(root):  # a later runner works on the grid
        assert step_state(root, step) == "pending"
        record(os.getpid())
        assert step_state(root, step) == "running"
    assert step_state(root, step) == "pending"  # no runner at all
