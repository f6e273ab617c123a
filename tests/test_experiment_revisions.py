"""A settings revision in an experiment that has started: the record moves to the new values,
the steps begun before keep their commands, the rest run with the new settings."""
import dataclasses
import json
from pathlib import Path

import pytest

from study.engine import runner
from study.engine.experiment import run_experiment
from study.engine.runner import step_state
from study.engine.settings import ExperimentError, Revision, check_settings, load_settings, save_settings
from study.engine.steps import Step

REVISIONS = (Revision("r2", {"answers": (5, 8), "checks": (6, 1)}, "decided from the first pair"),)


@dataclasses.dataclass(frozen=True)
class Settings:
    out_dir: str = "out"
    keep_dir: str = ""
    answers: int = 8
    checks: int = 1  # added with r2: a record from before has no such key
    seed: int = 0


def _old_record(path: Path, **values) -> None:
    """A record written before r2: no `checks`, no revisions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"out_dir": str(path.parent), "keep_dir": "", "answers": 5, "seed": 0, **values}))


def test_a_record_from_before_a_revision_reads_as_it_ran_and_is_revised_only_by_its_changes(tmp_path):
    path = tmp_path / "experiment.json"
    _old_record(path)
    assert load_settings(Settings, tmp_path, path.name, "run", REVISIONS) == Settings(
        out_dir=str(tmp_path), answers=5, checks=6)  # the key added by r2 reads as before it

    revised = check_settings(Settings(out_dir=str(tmp_path)), path, revisions=REVISIONS)
    assert revised.before == Settings(out_dir=str(tmp_path), answers=5, checks=6)
    assert revised.applied == [{"name": "r2", "changes": {"answers": (5, 8), "checks": (6, 1)},
                                "why": "decided from the first pair"}]
    assert "answers 5 -> 8" in revised.describe()

    with pytest.raises(ExperimentError, match="seed: the grid in place has 0, this command has 3"):
        check_settings(Settings(out_dir=str(tmp_path), seed=3), path, revisions=REVISIONS)
    with pytest.raises(ExperimentError, match="answers: the grid in place has 5, this command has 9"):
        check_settings(Settings(out_dir=str(tmp_path), answers=9), path, revisions=REVISIONS)
    # asking for the old values explicitly keeps the experiment as it was
    assert check_settings(Settings(out_dir=str(tmp_path), answers=5, checks=6), path, revisions=REVISIONS) is None

    save_settings(Settings(out_dir=str(tmp_path)), path, revised, REVISIONS)
    record = json.loads(path.read_text())
    assert record["answers"] == 8 and record["checks"] == 1
    assert record["revisions"][0]["name"] == "r2" and record["revisions"][0]["changes"]["answers"] == [5, 8]
    assert check_settings(Settings(out_dir=str(tmp_path)), path, revisions=REVISIONS) is None  # applied once
    with pytest.raises(ExperimentError, match="answers: the grid in place has 8, this command has 5"):
        check_settings(Settings(out_dir=str(tmp_path), answers=5, checks=6), path, revisions=REVISIONS)
    assert load_settings(Settings, tmp_path, path.name, "run", REVISIONS) == Settings(out_dir=str(tmp_path))


def test_a_new_record_holds_every_revision_from_the_start(tmp_path):
    path = tmp_path / "experiment.json"
    save_settings(Settings(out_dir=str(tmp_path)), path, None, REVISIONS)
    assert json.loads(path.read_text())["revisions"] == [{"name": "r2", "applied": "from the start"}]
    assert check_settings(Settings(out_dir=str(tmp_path)), path, revisions=REVISIONS) is None
    with pytest.raises(ExperimentError, match="answers"):  # never "revised" back to the old values
        check_settings(Settings(out_dir=str(tmp_path), answers=5, checks=6), path, revisions=REVISIONS)


def _plan(settings: Settings) -> list[Step]:
    """A training run (its checks are a setting), then two evaluations (their answers are one)."""
    root = Path(settings.out_dir)

    def made(name):
        return lambda: (root / name / "done").exists()
    return [Step("train", "train", root / "train", verify=made("train"),
                 command=lambda: ["distill", "--eval-every", str(300 // settings.checks)]),
            Step("eval-student", "eval", root / "eval-student", command=lambda: ["eval", "--n", str(settings.answers)],
                 verify=made("eval-student")),
            Step("eval-akd", "eval", root / "eval-akd", needs=("train",),
                 command=lambda: ["eval", "--n", str(settings.answers), "--model", "akd"], verify=made("eval-akd"))]


@pytest.fixture
def commands(monkeypatch):
    """Every `akd` command the runner starts, in order; each makes its step's output."""
    ran = []

    def fake(args, log_path, show=False):
        ran.append(args)
        name = {"distill": "train"}.get(args[0]) or ("eval-akd" if "akd" in args else "eval-student")
        out = log_path.parent.parent / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "done").write_text("")
        return 0, 0.1
    monkeypatch.setattr(runner, "_run_command", fake)
    return ran


def test_steps_begun_before_a_revision_keep_their_commands_and_the_rest_take_the_new_ones(tmp_path, commands):
    root = tmp_path / "grid"
    old = Settings(out_dir=str(root), answers=5, checks=6)
    _old_record(root / "experiment.json")
    run_experiment(old, _plan, "experiment.json", only="train", echo=lambda _: None,
                   revisions=REVISIONS)  # the old values asked for: no revision
    # the student's evaluation was stopped midway: its saved answers, no record (a new machine)
    (root / "eval-student").mkdir()
    assert commands == [["distill", "--eval-every", "50"]]

    lines = []
    states = run_experiment(Settings(out_dir=str(root)), _plan, "experiment.json", echo=lines.append,
                            revisions=REVISIONS)
    assert states == {"train": "done", "eval-student": "done", "eval-akd": "done"}
    assert commands[1:] == [["eval", "--n", "5"], ["eval", "--n", "8", "--model", "akd"]]  # begun: as it began
    assert any("settings revised (r2: answers 5 -> 8, checks 6 -> 1); 2 steps begun before keep their "
               "commands: train, eval-student" in line for line in lines)
    assert any(line.endswith("start eval-student: akd eval --n 5 (begun before settings revision r2: as it began)")
               for line in lines)
    record = json.loads((root / "steps" / "train.json").read_text())
    assert record["command"] == ["distill", "--eval-every", "50"]
    assert record["revised_command"] == ["distill", "--eval-every", "300"] and record["revision"] == "r2"

    # nothing runs again, and status says so under the revised settings
    assert run_experiment(Settings(out_dir=str(root)), _plan, "experiment.json", echo=lines.append,
                          revisions=REVISIONS) == states
    assert len(commands) == 3
    assert [step_state(root, s) for s in _plan(Settings(out_dir=str(root)))] == ["done"] * 3


def test_a_step_begun_before_whose_command_changes_again_runs_again(tmp_path, commands):
    root = tmp_path / "grid"
    _old_record(root / "experiment.json")
    run_experiment(Settings(out_dir=str(root), answers=5, checks=6), _plan, "experiment.json", only="train",
                   echo=lambda _: None, revisions=REVISIONS)
    run_experiment(Settings(out_dir=str(root)), _plan, "experiment.json", only="train", echo=lambda _: None,
                   revisions=REVISIONS)
    assert len(commands) == 1
    train = _plan(Settings(out_dir=str(root), checks=3))[0]  # another command than either it had
    assert step_state(root, train) == "pending"


def test_grid_v3_revises_the_steps_of_every_cpu_class_and_its_report_names_the_revision(tmp_path):
    from study.grid_v3.config import REVISIONS as V3_REVISIONS
    from study.grid_v3.config import GridV3Config
    from study.grid_v3.report import _revisions
    from study.grid_v3.run import every_step

    config = GridV3Config(out_dir=str(tmp_path))
    names = {step.name for step in every_step(config)}
    # an evaluation begun on another machine's class is carried over too
    assert {"eval-student-test-sampled@amx", "eval-student-test-sampled@avx512_bf16", "train-akd"} <= names
    assert all(getattr(config, key) == new for r in V3_REVISIONS for key, (_, new) in r.changes.items())

    revised = check_settings(config, _v3_record(tmp_path, config), revisions=V3_REVISIONS)
    assert revised.applied[0]["changes"] == {"full_heldout_evals": (6, 1), "choice_heldout_evals": (6, 1)}
    save_settings(config, tmp_path / "experiment.json", revised, V3_REVISIONS)
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "train-akd-mix.json").write_text(json.dumps({"name": "train-akd-mix", "revision": "r2"}))
    (tmp_path / "steps" / "train-akd.json").write_text(json.dumps({"name": "train-akd"}))
    [found] = _revisions(tmp_path)
    assert found["name"] == "r2" and found["begun_before"] == ["train-akd-mix"]
    assert found["changes"] == {"full_heldout_evals": [6, 1], "choice_heldout_evals": [6, 1]}


def _v3_record(root: Path, config) -> Path:
    """grid v3's record as the first machines wrote it: no full_heldout_evals, checkpoints nor revisions."""
    added = ("full_heldout_evals", "choice_heldout_evals", "checkpoints")
    record = {k: v for k, v in dataclasses.asdict(config).items() if k not in added}
    (root / "experiment.json").write_text(json.dumps(record))
    return root / "experiment.json"
