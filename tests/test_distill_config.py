"""DistillConfig nests its loss and batching configs: one declaration per setting, from the
command line to config.json to the resume check, and the flat config.json of older runs."""
import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from distill_cache import random_cache

from common.settings import option_fields, to_cli_args
from pipeline.cli import main
from pipeline.eval_command import distill_run_meta
from stages.distill import DistillConfig, DistillConfigError
from stages.distill.config import BatchingConfig
from stages.distill.distributed import DistEnv
from stages.distill.losses import LossConfig
from stages.distill.mixing import open_mix
from stages.distill.run_folder import CONFIG_FILE
from stages.distill.rundir import prepare_run_dir, run_record

FLAT_CONFIG = Path(__file__).parent / "fixtures" / "flat_config.json"  # written by akd 575374e
ENV = DistEnv(rank=0, world=1, local_rank=0, device=None)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    return [str(random_cache(root / "teacher", examples=10, rows_per_shard=5)),
            str(random_cache(root / "onpolicy", examples=10, rows_per_shard=5, k=6, seed=1, prefix="on"))]


def parse(args: list[str], monkeypatch) -> DistillConfig:
    """The config `akd distill ARGS` would train (train itself replaced)."""
    seen = []
    monkeypatch.setattr("pipeline.distill_command.train", lambda config: seen.append(config) or {})
    monkeypatch.setattr("pipeline.distill_command.resolve_model", lambda spec, *_, **__: spec)  # no model needed
    done = CliRunner().invoke(main, ["distill", *args], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert len(seen) == 1
    return seen[0]


def record_of(config: DistillConfig) -> dict:
    return run_record(config, open_mix(config.caches, config.cache_weights), "sha256:random", 384, 1, "float32")


def test_every_distill_setting_is_declared_once_with_help():
    fields = option_fields(DistillConfig)
    names = [f.name for _, f in fields]
    assert len(names) == len(set(names))  # build_config finds each option by its field name
    missing = [f.name for _, f in fields if not f.metadata.get("help")]
    assert not missing
    assert {f.name for f in dataclasses.fields(LossConfig)} - set(names) == {"eps"}  # eps: not an option


def test_cli_to_config_to_config_json_to_resume_check(caches, tmp_path, monkeypatch):
    args = ["--cache", caches[0], "--cache", caches[1], "--cache-weight", "1", "--cache-weight", "3",
            "--loss", "fkl", "--mu", "0.3", "--loss-chunk-size", "64", "--ce-weight", "0.1",
            "--max-batch-tokens", "256", "--max-seq-len", "128", "--eval-fraction", "0.2", "--lr", "1e-4",
            "--student", "some/student", "--runs-dir", str(tmp_path)]
    config = parse(args, monkeypatch)
    assert config.loss == LossConfig(kind="fkl", mu=0.3, chunk_size=64, ce_weight=0.1)
    assert config.batching == BatchingConfig(max_batch_tokens=256, max_seq_len=128, eval_fraction=0.2)
    assert config.caches == tuple(caches) and config.cache_weights == (1.0, 3.0)
    assert config.run_dir == str(tmp_path / "student-fkl") and config.lr == 1e-4

    # the way back to arguments rebuilds the same config
    again = to_cli_args(config, skip=("student", "kind", "run_dir"))
    assert parse([*again, "--loss", "fkl", "--student", "some/student", "--runs-dir", str(tmp_path)],
                 monkeypatch) == config

    # config.json: every setting once, nested
    prepare_run_dir(config, record_of(config), ENV)
    saved = json.loads((config.run_path / CONFIG_FILE).read_text())
    assert saved["options"]["loss"] == {"kind": "fkl", "mu": 0.3, "alpha": 0.1, "beta": 0.5, "ce_weight": 0.1,
                                        "temperature": 1.0, "chunk_size": 64, "eps": 1e-8}
    assert saved["options"]["batching"]["max_batch_tokens"] == 256 and "max_batch_tokens" not in saved["options"]
    assert "loss" not in saved and "mu" not in saved["options"]

    # resuming: the same command passes, a changed nested setting is named by its dotted name
    (config.run_path / "checkpoints" / "step-0000001").mkdir(parents=True)
    assert prepare_run_dir(config, record_of(config), ENV).name == "step-0000001"
    for changed, message in ((dataclasses.replace(config, loss=dataclasses.replace(config.loss, mu=0.5)),
                              "loss.mu: the run in place has 0.3, this command has 0.5"),
                             (dataclasses.replace(config, batching=BatchingConfig(max_batch_tokens=512,
                                                                                  max_seq_len=128,
                                                                                  eval_fraction=0.2)),
                              "batching.max_batch_tokens: the run in place has 256, this command has 512"),
                             (dataclasses.replace(config, cache_weights=(1.0, 2.0)),
                              "cache_weights: the run in place has [1.0, 3.0], this command has [1.0, 2.0]")):
        with pytest.raises(DistillConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            prepare_run_dir(changed, record_of(changed), ENV)


def flat_run(tmp_path: Path, cache: str) -> Path:
    """A run folder as akd wrote it before nesting: flat options, `loss` twice, one `cache`."""
    run = tmp_path / "old-run"
    (run / "checkpoints" / "step-0000002").mkdir(parents=True)
    (run / "final").mkdir()
    text = FLAT_CONFIG.read_text().replace('"CACHE"', json.dumps(cache)).replace('"RUN"', json.dumps(str(run)))
    (run / CONFIG_FILE).write_text(text.replace('"STUDENT"', json.dumps("some/student")))
    return run


def flat_equivalent(run: Path, cache: str, **changes) -> DistillConfig:
    """Today's config for the command that made the flat run."""
    options = dict(caches=[cache], run_dir=str(run), student="some/student", max_steps=2, max_batch_tokens=128,
                   precision="bf16",  # the flat run had bf16: true
                   max_seq_len=128)
    return DistillConfig.from_options({**options, **changes})


def test_a_flat_config_json_is_read_in_the_nested_layout_and_its_run_refused_in_one_line(caches, tmp_path):
    run = flat_run(tmp_path, caches[0])
    config = flat_equivalent(run, caches[0])
    with pytest.raises(DistillConfigError) as caught:
        prepare_run_dir(config, record_of(config), ENV)
    message = str(caught.value)
    assert "\n" not in message and "layout 1" in message and "--overwrite" in message

    # the flat keys were mapped: a changed setting is still named, by today's name
    changed = flat_equivalent(run, caches[0], mu=0.25)
    with pytest.raises(DistillConfigError, match="loss.mu: the run in place has 0.5, this command has 0.25"):
        prepare_run_dir(changed, record_of(changed), ENV)
    changed = flat_equivalent(run, caches[0], sort_pool=16)
    with pytest.raises(DistillConfigError, match="batching.sort_pool: the run in place has 32"):
        prepare_run_dir(changed, record_of(changed), ENV)

    # akd eval still learns the loss and cache of an old run's final/
    assert distill_run_meta(run / "final") == {"loss": "akd", "cache": caches[0], "base_model": "some/student",
                                               "run_dir": str(run)}

    # --overwrite starts it again, in today's layout
    fresh = flat_equivalent(run, caches[0], overwrite=True)
    assert prepare_run_dir(fresh, record_of(fresh), ENV) is None
    assert json.loads((run / CONFIG_FILE).read_text())["layout"] == 2


def test_bad_options_are_one_line_errors_naming_the_option(caches):
    for options, message in (({"caches": []}, "--cache: give at least one"),
                             ({"cache_weights": [1.0]}, "--cache-weight: 1 weight.s. for 2 cache"),
                             ({"cache_weights": [1.0, 0.0]}, "--cache-weight must be positive"),
                             ({"caches": [caches[0], caches[0]]}, "a cache is given twice"),
                             ({"mu": 2.0}, r"loss mu must be in \(0.0, 1.0\]"),
                             ({"max_seq_len": 1024}, "--max-seq-len 1024 exceeds --max-batch-tokens 512"),
                             ({"sort_pool": 0}, "--sort-pool must be at least 1"),
                             ({"cache_dir": "x"}, "unknown distill option.s.: cache_dir")):
        with pytest.raises(DistillConfigError, match=message) as caught:
            DistillConfig.from_options({"caches": caches, **options})
        assert "\n" not in str(caught.value)


def test_a_run_from_before_precision_resumes_under_the_precision_it_trained_in(caches, tmp_path):
    config = DistillConfig.from_options({"caches": caches, "run_dir": str(tmp_path / "run"), "precision": "bf16"})
    record = record_of(config)
    options = {k: v for k, v in record["options"].items() if k != "precision"}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CONFIG_FILE).write_text(json.dumps({**record, "options": {**options, "bf16": True}}))
    (tmp_path / "run" / "checkpoints" / "step-0000001").mkdir(parents=True)  # something to resume
    from stages.distill.run_folder import read_run_record
    assert read_run_record(tmp_path / "run" / CONFIG_FILE)["options"]["precision"] == "bf16"
    as_float32 = DistillConfig.from_options({"caches": caches, "run_dir": str(tmp_path / "run"),
                                             "precision": "float32"})
    with pytest.raises(DistillConfigError, match="precision: the run in place has 'bf16', this command has 'float32'"):
        prepare_run_dir(as_float32, record_of(as_float32), ENV)


def test_auto_precision_is_bf16_only_where_the_hardware_computes_it(monkeypatch):
    import torch

    from stages.distill import trainer

    config = DistillConfig.from_options({"caches": ["c"]})
    cpu = torch.device("cpu")
    monkeypatch.setattr(trainer, "cpu_dtype", lambda requested: "float32")  # bf16 emulated
    assert trainer.matmul_precision(config, cpu) == "float32"
    monkeypatch.setattr(trainer, "cpu_dtype", lambda requested: requested)  # AVX-512 BF16 or AMX
    assert trainer.matmul_precision(config, cpu) == "bf16"
    forced = DistillConfig.from_options({"caches": ["c"], "precision": "bf16"})
    monkeypatch.setattr(trainer, "cpu_dtype", lambda requested: "float32")
    assert trainer.matmul_precision(forced, cpu) == "bf16"


def test_a_setting_added_since_a_run_began_reads_as_its_default_there():
    from stages.distill.config import resume_difference

    saved = {"lr": 1e-5, "loss": {"kind": "akd"}}
    assert resume_difference(saved, {**saved, "heldout_per_sequence": False}) is None
    assert "heldout_per_sequence" in resume_difference(saved, {**saved, "heldout_per_sequence": True})
