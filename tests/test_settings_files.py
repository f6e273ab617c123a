"""Settings files (`--config FILE`, `--print-config`) for every command that takes settings.

The file's schema is the config dataclass (common/settings_files.py); these tests hold the
round trip (what --print-config writes, --config reads back unchanged), flags over the file,
one line per bad file, the default runs in configs/, and a distill run rerun from its own
config.json.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# each command that takes settings, with what it needs on the command line to print them
COMMANDS = {
    "teacher-cache": ["--teacher", "t", "--out", "c", "--dataset", "d.json"],
    "rollout": ["--model", "m", "--out", "r.jsonl", "--dataset", "d.json"],
    "distill": ["--cache", "c1", "--cache", "c2", "--cache-weight", "1", "--cache-weight", "3",
                "--student", "s1", "--student", "s2", "--loss", "fkl", "--no-plots", "--lr", "1e-5"],
    "eval": ["--model", "m", "--benchmark", "mbpp", "--limit", "3"],
    "experiment run": [],
    "onpolicy run": ["--rounds", "3"],
}


def akd(*args: str):
    return CliRunner().invoke(main, list(args))


def printed(command: str, *args: str) -> str:
    done = akd(*command.split(), *args, "--print-config")
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_what_print_config_writes_config_reads_back_unchanged(command, tmp_path):
    first = printed(command, *COMMANDS[command])
    for suffix, dump in ((".yaml", lambda d: yaml.safe_dump(d)), (".json", json.dumps)):
        settings = tmp_path / f"settings{suffix}"
        settings.write_text(dump(yaml.safe_load(first)))
        assert printed(command, "--config", str(settings)) == first, suffix


def test_a_toml_file_reads_as_the_yaml_one(tmp_path):
    (tmp_path / "a.toml").write_text('caches = ["c"]\nmax_steps = 7\n[loss]\nkind = "rkl"\nmu = 0.25\n')
    (tmp_path / "a.yaml").write_text("caches: [c]\nmax_steps: 7\nloss: {kind: rkl, mu: 0.25}\n")
    toml = yaml.safe_load(printed("distill", "--config", str(tmp_path / "a.toml")))
    assert toml == yaml.safe_load(printed("distill", "--config", str(tmp_path / "a.yaml")))
    assert toml["loss"]["mu"] == 0.25 and toml["max_steps"] == 7 and toml["loss"]["kind"] == ["rkl"]


def test_flags_on_the_command_line_override_the_file(tmp_path):
    settings = tmp_path / "run.yaml"
    settings.write_text("caches: [from-file]\nlr: 1.0e-4\nloss: {kind: fkl, mu: 0.3}\nbatching: {max_seq_len: 256}\n")
    shown = yaml.safe_load(printed("distill", "--config", str(settings), "--lr", "3e-4", "--cache", "flag"))
    assert shown["lr"] == 3e-4 and shown["caches"] == ["flag"]  # the flags
    assert shown["loss"] == {**shown["loss"], "kind": ["fkl"], "mu": 0.3}  # the file where no flag was given
    assert shown["batching"]["max_seq_len"] == 256 and shown["batching"]["max_batch_tokens"] == 512  # defaults


BAD_FILES = {
    "lr: abc\n": "'lr' must be a number, got 'abc'",
    "max_steps: 2.5\n": "'max_steps' must be a whole number, got 2.5",
    "plots: 'no'\n": "'plots' must be true or false",
    "lrr: 0.1\n": "unknown setting 'lrr'",
    "loss: {kind: kl}\n": "'loss.kind' must be one of fkl, rkl",
    "loss: {muu: 1}\n": "unknown setting 'loss.muu'",
    "max_batch_tokens: 64\n": "'max_batch_tokens' belongs under 'batching:'",
    "loss: akd\n": "'loss' holds settings (a mapping), got 'akd'",
    "loss: {eps: 0.1}\n": "'loss.eps' is fixed at 1e-08",
    "- a\n- b\n": "a settings file is a mapping",
    "lr: [1\n": "not valid YAML (line 2, column 1",
}


@pytest.mark.parametrize("text", sorted(BAD_FILES))
def test_a_bad_settings_file_is_one_line_naming_the_file_and_the_key(text, tmp_path):
    settings = tmp_path / "bad.yaml"
    settings.write_text(text)
    done = akd("distill", "--config", str(settings), "--cache", "c")
    assert done.exit_code != 0 and "Traceback" not in done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and str(settings) in lines[0], done.output
    assert BAD_FILES[text] in lines[0]


def test_an_option_the_command_adds_is_checked_with_its_own_type(tmp_path):
    settings = tmp_path / "bad.yaml"
    settings.write_text("only: [a, b]\n")  # --only takes one value
    done = akd("onpolicy", "run", "--config", str(settings))
    assert done.exit_code != 0 and str(settings) in done.output and "'only'" in done.output


def test_a_missing_required_setting_is_still_asked_for():
    done = akd("eval")  # click >= 8.3 took default=None as a given value: `--model` went unasked
    assert done.exit_code == 2 and "Missing option '--model'" in done.output


def test_the_default_runs_in_configs_load_and_agree_with_each_other():
    files = {"teacher-cache": "cache.yaml", "distill": "distill.yaml", "eval": "eval.yaml",
             "onpolicy run": "onpolicy.yaml"}
    shown = {command: yaml.safe_load(printed(command, "--config", str(CONFIGS / name)))
             for command, name in files.items()}
    cache = shown["teacher-cache"]["out_dir"]
    assert shown["distill"]["caches"] == [cache]  # stage two reads what stage one writes
    assert shown["distill"]["student"] == [shown["teacher-cache"]["student_tokenizer"]]
    assert shown["onpolicy run"]["teacher"] == shown["teacher-cache"]["model"] == shown["eval"]["model"]
    # the Makefile reads the cache folder off its line of the file (no YAML parser in make)
    make = subprocess.run(["make", "-n", "-s", "teacher-cache", "VENV=.venv-absent"], cwd=REPO,
                          capture_output=True, text=True)
    assert re.search(rf"--config configs/cache\.yaml --out {re.escape(cache)}\s", make.stdout), make.stdout


def test_make_variables_override_the_config_and_name_their_own_cache():
    make = subprocess.run(["make", "-n", "-s", "distill", "LIMIT=2", "STEPS=3", "LOSS=fkl rkl", "VENV=.venv-absent"],
                          cwd=REPO, capture_output=True, text=True)
    assert "--out caches/custom-n2 " in make.stdout and "--limit 2" in make.stdout
    assert "--config configs/distill.yaml --cache caches/custom-n2 --runs-dir runs/custom-n2" in make.stdout
    assert "--loss fkl --loss rkl" in make.stdout and "--max-steps 3" in make.stdout


@pytest.mark.slow
def test_a_finished_runs_config_json_reruns_it_to_the_same_result(tiny_student, tmp_path):
    from transformers import AutoTokenizer

    from cache_schema import tokenizer_fingerprint
    from distill_cache import random_cache
    from safetensors.torch import load_file

    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    cache = random_cache(tmp_path / "cache", examples=24, rows_per_shard=8, vocab=len(tokenizer),
                         fingerprint=tokenizer_fingerprint(tokenizer), response_len=(3, 12))
    first = tmp_path / "first"
    done = akd("distill", "--cache", str(cache), "--student", str(tiny_student), "--run-dir", str(first),
               "--loss", "akd", "--max-steps", "4", "--lr", "1e-3", "--warmup-steps", "1", "--precision", "float32",
               "--deterministic", "--threads", "1", "--eval-every", "2", "--no-progress", "--no-plots",
               "--final-dtype", "float32")
    assert done.exit_code == 0, done.output
    second = tmp_path / "second"
    done = akd("distill", "--config", str(first / "config.json"), "--run-dir", str(second))
    assert done.exit_code == 0, done.output
    record = [json.loads((run / "config.json").read_text()) for run in (first, second)]
    assert record[1]["options"] == {**record[0]["options"], "run_dir": str(second)}
    summary = [json.loads((run / "summary.json").read_text()) for run in (first, second)]
    measured = ("steps", "data_counts", "precision")  # what the run computed, not how long it took
    assert [{k: s[k] for k in measured} for s in summary][1] == {k: summary[0][k] for k in measured}
    assert {k: v for k, v in summary[1]["eval"].items() if not k.endswith("_s")} == \
        {k: v for k, v in summary[0]["eval"].items() if not k.endswith("_s")}
    assert {k: v for k, v in summary[1]["train"].items() if not k.endswith("_s")} == \
        {k: v for k, v in summary[0]["train"].items() if not k.endswith("_s")}
    weights = [load_file(run / "final" / "model.safetensors") for run in (first, second)]
    assert all(weights[0][name].equal(weights[1][name]) for name in weights[0])
