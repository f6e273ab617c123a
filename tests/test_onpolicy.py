"""Rounds of offline on-policy distillation (issue 12): the plan, its commands (built from the
stages' configs, parsed back by the real CLI), the refusal of changed settings, the summary,
and two tiny rounds killed in round 2 and resumed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.settings import build_config, flag_of, option_default, option_defaults
from pipeline.cli import main
from pipeline.settings_file_options import OWN_PARAMS
from stages.distill.config import DistillConfig
from stages.distill.losses import LossConfig
from stages.teacher import RolloutConfig, TeacherCacheConfig
from study.engine.settings import ExperimentError
from study.onpolicy.rounds import LOG_FILE, OnPolicyConfig, build_rounds, distill_args, rounds_of, save_or_check_config
from study.onpolicy.run import run_rounds
from study.onpolicy.summary import FKL_PLOT, SUMMARY_JSON, SUMMARY_MD, write_summary
from teacher_data import write_rows

REPO = Path(__file__).resolve().parents[1]


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _options(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def _parse(args: list[str]) -> dict:
    """The parameters the real `akd` command line gives these arguments (the caches a
    distill command names must exist to be parsed)."""
    if args[0] == "distill":
        for cache in _options(args, "--cache"):
            Path(cache).mkdir(parents=True, exist_ok=True)
    command = main.commands[args[0]]
    params = command.make_context(args[0], list(args[1:])).params
    return {k: v for k, v in params.items() if k not in OWN_PARAMS}  # --config and --print-config


def _commands(config: OnPolicyConfig) -> dict[str, list[str]]:
    return {s.name: [str(a) for a in s.command()] for s in build_rounds(config)}


def test_each_round_starts_from_the_last_rounds_final_student_on_its_own_rows(tmp_path):
    config = OnPolicyConfig(out_dir=str(tmp_path), rounds=3, prompts=50, first_row=7, eval=True)
    steps = build_rounds(config)
    names = [s.name for s in steps]
    assert names == ["eval-round-0", "rollout-1", "score-1", "train-1", "eval-1", "rollout-2", "score-2",
                     "train-2", "eval-2", "rollout-3", "score-3", "train-3", "eval-3"]
    needs = {s.name: s.needs for s in steps}
    assert needs["rollout-1"] == () and needs["rollout-2"] == ("train-1",) and needs["rollout-3"] == ("train-2",)
    assert needs["score-2"] == ("rollout-2",) and needs["train-2"] == ("score-2",)
    commands = _commands(config)
    rounds = rounds_of(config)
    assert rounds[0].student == "qwen2.5-coder-0.5b-instruct"
    for r in (2, 3):
        previous_final = str(tmp_path / f"round-{r - 1}" / "run" / rounds[r - 2].run.name / "final")
        assert rounds[r - 1].student == previous_final
        assert _option(commands[f"rollout-{r}"], "--model") == previous_final
        assert _option(commands[f"score-{r}"], "--student-tokenizer") == previous_final
        assert _option(commands[f"train-{r}"], "--student") == previous_final
    assert _option(commands["eval-round-0"], "--model") == "qwen2.5-coder-0.5b-instruct"
    assert _option(commands["eval-2"], "--model") == str(rounds[1].final)
    # `akd distill` names the run RUNS_DIR/<student>-<loss>: the plan's run folder is that one
    for round_ in rounds:
        params = _parse(commands[f"train-{round_.number}"])
        assert round_.run == Path(params["runs_dir"]) / f"{Path(params['students'][0]).name}-akd"
    # different rows every round; rollout and scoring read the same ones
    slices = []
    for r in (1, 2, 3):
        rollout, score = _parse(commands[f"rollout-{r}"]), _parse(commands[f"score-{r}"])
        assert (rollout["offset"], rollout["limit"]) == (score["offset"], score["limit"])
        assert score["responses_from"] == rollout["out"] == str(tmp_path / f"round-{r}" / "rollouts")
        assert Path(score["out_dir"]) == tmp_path / f"round-{r}" / "cache"
        assert _options(commands[f"train-{r}"], "--cache") == [score["out_dir"]]
        slices.append(range(rollout["offset"], rollout["offset"] + rollout["limit"]))
    assert slices == [range(7, 57), range(57, 107), range(107, 157)]


def _non_defaults(cls, args: list[str], skip=()) -> dict[str, str]:
    """flag -> value written, for every option of `cls` in `args` (a flag must be one)."""
    written = {}
    for owner, field, default in option_defaults(cls, skip):
        flag = flag_of(field)
        if flag in args:
            written[flag] = (default, args[args.index(flag) + 1])
        elif "--no-" + flag[2:] in args:
            written[flag] = (default, False)
    return written


@pytest.mark.parametrize("overrides", [{}, {"n": 4, "temperature": 1.0, "k": 8, "steps": 9, "lr": 1e-5,
                                             "loss": "fkl", "backend": "hf", "seed": 3}])
def test_commands_are_the_stages_configs_with_no_default_retyped(tmp_path, overrides):
    """Each command, parsed by the real CLI, rebuilds exactly the config the plan meant, and it
    writes only the settings that differ from the stage's own default."""
    from study.onpolicy.rounds import rollout_config, score_config

    config = OnPolicyConfig(out_dir=str(tmp_path), **overrides)
    assert config.temperature == option_default(RolloutConfig, "temperature") or "temperature" in overrides
    assert (OnPolicyConfig.k, OnPolicyConfig.steps, OnPolicyConfig.lr, OnPolicyConfig.loss) == (
        TeacherCacheConfig.k, DistillConfig.max_steps, DistillConfig.lr, LossConfig.kind)
    commands = _commands(config)
    for round_ in rounds_of(config):
        r = round_.number
        for cls, args, meant in ((RolloutConfig, commands[f"rollout-{r}"], rollout_config(config, round_)),
                                 (TeacherCacheConfig, commands[f"score-{r}"], score_config(config, round_))):
            params = _parse(args)
            assert str(params.pop("models_dir")) == "models"
            assert build_config(cls, params) == meant
            for flag, (default, value) in _non_defaults(cls, args).items():
                assert str(value) != str(default), f"{flag} {value} is {cls.__name__}'s default"
        args = commands[f"train-{r}"]
        params = _parse(args)
        chosen = {k: v for k, v in params.items() if k not in ("students", "losses", "models_dir", "runs_dir", "run_dir")}
        assert DistillConfig.from_options({**chosen, "student": params["students"][0],
                                           "kind": params["losses"][0]}) == \
            config.distill_config(round_.student, round_.cache)
        skip = ("student", "kind", "run_dir")
        for flag, (default, value) in _non_defaults(DistillConfig, args, skip).items():
            assert str(value) != str(default), f"{flag} {value} is DistillConfig's default"
    if not overrides:  # the default writes no sampling, k or training setting at all
        assert not {"--temperature", "--k", "--max-steps", "--lr", "--seed"} & set(
            a for c in commands.values() for a in c)
    else:
        assert _option(commands["rollout-1"], "--temperature") == "1.0"
        assert _option(commands["score-2"], "--k") == "8"
        assert _option(commands["train-2"], "--max-steps") == "9"


def test_a_changed_setting_is_refused_like_the_grid_refuses_it(tmp_path):
    save_or_check_config(OnPolicyConfig(out_dir=str(tmp_path), prompts=40))
    save_or_check_config(OnPolicyConfig(out_dir=str(tmp_path), prompts=40))  # same settings: fine
    with pytest.raises(ExperimentError, match="prompts: the run in place has 40, this command has 41"):
        save_or_check_config(OnPolicyConfig(out_dir=str(tmp_path), prompts=41))
    with pytest.raises(ExperimentError, match=r"steps: .* \(and 1 more\); use another --out-dir"):
        save_or_check_config(OnPolicyConfig(out_dir=str(tmp_path), prompts=40, steps=3, lr=1e-4))
    saved = json.loads((tmp_path / "onpolicy.json").read_text())
    del saved["eval_limit"]  # a setting added since reads as its default
    (tmp_path / "onpolicy.json").write_text(json.dumps(saved))
    save_or_check_config(OnPolicyConfig(out_dir=str(tmp_path), prompts=40))
    for bad, message in (({"rounds": 0}, "--rounds must be >= 1"),
                         ({"offpolicy_cache": "c", "onpolicy_fraction": 1.0}, "--onpolicy-fraction"),
                         ({"lr": -1.0}, "--lr must be > 0")):
        with pytest.raises(Exception, match=message):
            OnPolicyConfig(out_dir=str(tmp_path / "x"), **bad)


def test_rounds_past_the_datasets_end_are_refused_before_anything_runs(tmp_path):
    data = tmp_path / "data.jsonl"
    write_rows(data)  # 22 rows
    config = OnPolicyConfig(out_dir=str(tmp_path / "out"), dataset=str(data), rounds=3, prompts=8)
    with pytest.raises(ExperimentError, match=r"--rounds 3 x --prompts 8 from --first-row 0 needs 24 rows; "
                                              r".*data.jsonl has 22"):
        run_rounds(config, echo=lambda line: None)
    assert not (tmp_path / "out" / "steps").exists()


def test_a_failed_round_blocks_the_later_rounds_and_the_summary_says_so(tmp_path, monkeypatch):
    data = tmp_path / "data.jsonl"
    write_rows(data)
    config = OnPolicyConfig(out_dir=str(tmp_path / "out"), dataset=str(data), rounds=2, prompts=5)
    ran = []

    def fake_run(args, log_path, show=False):  # the runner's process launcher, not a stage
        ran.append((args[0], show))
        return 1, 0.1

    monkeypatch.setattr("study.engine.runner._run_command", fake_run)
    states = run_rounds(config, echo=lambda line: None)
    assert ran == [("rollout", True)]  # children's bars are shown
    assert states == {"rollout-1": "failed", "score-1": "blocked", "train-1": "blocked",
                      "rollout-2": "blocked", "score-2": "blocked", "train-2": "blocked"}
    log = (tmp_path / "out" / LOG_FILE).read_text()
    assert "FAILED rollout-1" in log and "blocked rollout-2: needs train-1" in log
    summary = json.loads((tmp_path / "out" / SUMMARY_JSON).read_text())
    assert [r["fidelity"] for r in summary["rounds"]] == [None, None]
    assert "not trained" in (tmp_path / "out" / SUMMARY_MD).read_text()


def _fake_run(run_dir: Path, fkls: list[float]) -> None:
    run_dir.mkdir(parents=True)
    records = [{"split": "eval", "step": 5 * i, "eval_fkl": f, "eval_rkl": f / 2, "eval_top1_agreement": 0.5 + i / 10,
                "eval_nll": 1.0, "eval_tokens": 321} for i, f in enumerate(fkls)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_summary_tables_each_rounds_heldout_fidelity_and_pass_at_1(tmp_path):
    config = OnPolicyConfig(out_dir=str(tmp_path), rounds=2, steps=10, eval=True, benchmarks="humaneval")
    first, second = rounds_of(config)
    _fake_run(first.run, [0.2, 0.15, 0.1])
    _fake_run(second.run, [0.12, 0.08, 0.05])
    second.eval_dir.mkdir(parents=True)
    (second.eval_dir / "summary.json").write_text(json.dumps({"benchmarks": {"humaneval": {"pass@1": 0.5}}}))
    summary = write_summary(config)
    rows = summary["rounds"]
    assert [(r["fidelity"]["before"]["fkl"], r["fidelity"]["after"]["fkl"]) for r in rows] == [
        (0.2, 0.1), (0.12, 0.05)]
    assert rows[0]["pass@1"] is None and rows[1]["pass@1"] == {"humaneval": 0.5}
    assert rows[1]["rows"] == [config.prompts, 2 * config.prompts]
    markdown = (tmp_path / SUMMARY_MD).read_text()
    assert "| 1 | 0-319 | 321 | 0.2000 -> 0.1000 | 0.500 -> 0.700 |  |" in markdown
    assert "| 2 | 320-639 | 321 | 0.1200 -> 0.0500 | 0.500 -> 0.700 | humaneval 50.0% |" in markdown
    assert json.loads((tmp_path / SUMMARY_JSON).read_text()) == summary
    assert (tmp_path / FKL_PLOT).stat().st_size > 1000


def test_offpolicy_cache_is_mixed_in_by_gkds_lambda(tmp_path):
    config = OnPolicyConfig(out_dir=str(tmp_path), offpolicy_cache="caches/teacher", onpolicy_fraction=0.7)
    args = distill_args(config, rounds_of(config)[1])
    assert _options(args, "--cache") == [str(tmp_path / "round-2" / "cache"), "caches/teacher"]
    assert _options(args, "--cache-weight") == ["0.7", "0.3"]
    assert "--cache-weight" not in distill_args(OnPolicyConfig(out_dir=str(tmp_path)), rounds_of(config)[0])


def test_a_round_trains_on_its_cache_mixed_with_an_offpolicy_cache(tiny_models, tmp_path):
    from click.testing import CliRunner

    from distill_cache import teacher_cache
    from study.engine.steps import run_is_whole

    teacher, student = tiny_models
    config = OnPolicyConfig(out_dir=str(tmp_path), student=str(student), steps=2, onpolicy_fraction=0.5,
                            offpolicy_cache=str(teacher_cache(teacher, tmp_path / "off", examples=8, k=8)),
                            distill_options="--max-batch-tokens 128 --max-seq-len 128 --precision float32 "
                                            "--warmup-steps 0 --threads 1 --no-plots --no-progress")
    round_ = rounds_of(config)[0]
    teacher_cache(teacher, round_.cache, examples=8, k=8, teacher_name="on-policy")
    result = CliRunner().invoke(main, distill_args(config, round_))
    assert result.exit_code == 0, result.output
    assert run_is_whole(round_.run, 2)
    record = json.loads((round_.run / "config.json").read_text())
    assert str(tmp_path / "off") in json.dumps(record)


@pytest.mark.slow
def test_two_tiny_rounds_killed_in_round_two_resume_from_round_ones_student(tiny_models, tmp_path):
    from cache_schema import CacheReader
    from study.onpolicy.rounds import load_config, responses_are_whole
    from study.engine.steps import cache_is_whole, run_is_whole

    teacher, student = tiny_models
    data = tmp_path / "data.jsonl"
    write_rows(data)
    out = tmp_path / "rounds"
    args = [sys.executable, "-m", "pipeline.cli", "onpolicy", "run", "--out-dir", str(out),
            "--teacher", str(teacher), "--student", str(student), "--dataset", str(data),
            "--rounds", "2", "--prompts", "8", "--n", "2", "--temperature", "1.0", "--k", "8",
            "--max-new-tokens", "8", "--steps", "2", "--lr", "1e-3", "--backend", "hf", "--distill-options",
            "--max-batch-tokens 128 --max-seq-len 128 --eval-fraction 0.5 --precision float32 --warmup-steps 0 "
            "--threads 1 --final-dtype float32"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    runner = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / LOG_FILE
    deadline = time.time() + 600
    while "start score-2" not in (log.read_text() if log.exists() else ""):
        assert runner.poll() is None and time.time() < deadline, "the rounds stopped before the kill"
        time.sleep(0.1)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    before = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    killed = [name for name, record in before.items() if record["status"] == "running"]
    assert len(killed) == 1 and killed[0].endswith("-2"), before
    done_before = {n for n, r in before.items() if r["status"] == "done"}
    assert {"rollout-1", "score-1", "train-1", "rollout-2"} <= done_before

    status = subprocess.run([sys.executable, "-m", "pipeline.cli", "onpolicy", "status", "--out-dir", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    assert f"pending  {killed[0]}" in status and "done     train-1" in status
    assert "| 1 | 0-7 |" in status  # round 1's fidelity is already in the table

    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)
    after = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    assert set(after) == {f"{k}-{r}" for k in ("rollout", "score", "train") for r in (1, 2)}
    assert all(r["status"] == "done" for r in after.values())
    for name in done_before:  # finished steps were not run again
        assert after[name]["started"] == before[name]["started"], name
    assert after[killed[0]]["started"] != before[killed[0]]["started"]

    first, second = rounds_of(load_config(out))
    assert second.student == str(first.final)
    run_config = json.loads((second.run / "config.json").read_text())
    assert run_config["student"]["name"] == str(first.final)  # round 2 trained round 1's student
    assert run_config["mix"]["caches"][0]["path"] == str(second.cache.resolve())
    for round_, rows in ((first, range(0, 8)), (second, range(8, 16))):
        assert responses_are_whole(round_.rollouts) and cache_is_whole(round_.cache)
        assert run_is_whole(round_.run, 2)
        assert not (round_.run / "checkpoints").exists()
        assert (round_.run / "metrics.jsonl").exists() and (round_.run / "losses.png").exists()
        ids = [e.example_id for e in CacheReader(round_.cache).iter_examples()]
        assert ids and all(int(i.split(":")[1]) in rows for i in ids)
        source = CacheReader(round_.cache).manifest.identity["responses"]
        assert source["source"] == "rollout" and source["model"]["model"] == round_.student
    summary = json.loads((out / SUMMARY_JSON).read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert all(r["fidelity"]["before"]["fkl"] > 0 for r in summary["rounds"])
    assert (out / FKL_PLOT).stat().st_size > 1000 and "| 2 | 8-15 |" in (out / SUMMARY_MD).read_text()
