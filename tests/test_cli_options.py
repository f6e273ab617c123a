"""Every option of a stage's command is its config's field, with the field's default in that
config (a nested setting's default is the enclosing field's default instance's value)."""
import dataclasses

import pytest

from common.settings import option_defaults
from pipeline.cli import main
from pipeline.settings_file_options import OWN_PARAMS
from stages.distill import DistillConfig
from stages.evaluate import EvalConfig
from stages.evaluate.export import SampleExportConfig
from stages.evaluate.speed import SpeedConfig
from stages.evaluate.references import ReferenceAnswersConfig
from stages.evaluate.verified import VerifiedAnswersConfig
from stages.teacher import RolloutConfig, TeacherCacheConfig
from study.grid_v2.config import ExperimentConfig

FILE = OWN_PARAMS  # --config FILE and --print-config (pipeline/settings_file_options.py)
# command path -> (config class, options of the command line itself, fields it sets itself)
COMMANDS = {
    ("teacher-cache",): (TeacherCacheConfig, {"models_dir", *FILE}, set()),
    ("rollout",): (RolloutConfig, {"models_dir", *FILE}, set()),
    ("eval",): (EvalConfig, {"models_dir", *FILE}, set()),
    ("speed",): (SpeedConfig, {"models_dir"}, set()),
    # a sweep: --student/--loss repeat, and each pair gets its own run folder
    ("distill",): (DistillConfig, {"students", "losses", "models_dir", "runs_dir", "run_dir", *FILE},
                   {"student", "kind", "run_dir"}),
    ("experiment", "run"): (ExperimentConfig, {"only", *FILE}, set()),
    ("eval-export",): (SampleExportConfig, {"eval_dir", "out_dir"}, set()),
    ("data", "verified-answers"): (VerifiedAnswersConfig, {"eval_dir"}, set()),
    ("data", "references"): (ReferenceAnswersConfig, set(), set()),
}


def _command(path):
    command = main
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_option_is_a_field_with_the_same_default(path):
    config_cls, cli_only, set_by_command = COMMANDS[path]
    params = {p.name: p for p in _command(path).params if p.name != "help"}
    defaults = {f.name: default for _, f, default in option_defaults(config_cls)}
    assert set(params) - cli_only == set(defaults) - set_by_command
    for name in set(params) - cli_only:
        expected = defaults[name]
        if expected is dataclasses.MISSING:  # a field without default is a required option
            assert params[name].required, name
            continue
        if params[name].multiple:
            expected = tuple(expected or ())
        assert params[name].default == expected and not params[name].required, name
