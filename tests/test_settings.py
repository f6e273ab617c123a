"""Settings declared once: generated options, their defaults, and the way back to arguments."""
import dataclasses
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner

from common.settings import build_config, option_defaults, setting, to_cli_args
from pipeline.dataclass_options import dataclass_options


@dataclass(frozen=True)
class Inner:
    mu: float = setting(0.5, "head mass")
    kind: str = setting("akd", "loss", choices=("akd", "fkl"), flag="--loss")


@dataclass
class Outer:
    out: str = setting(help="where")
    limit: int | None = setting(None, "rows (all when unset)")
    bf16: bool = setting(True, "autocast")
    tags: tuple[str, ...] = setting((), "repeatable")
    inner: Inner = field(default_factory=Inner)
    hidden: int = setting(3, cli=False)


def _command(cls=None):
    """A command generated from `cls` (default: Outer) that keeps the config it builds."""
    cls, seen = cls or Outer, {}

    @click.command()
    @dataclass_options(cls)
    def cmd(**options):
        seen["config"] = build_config(cls, options)

    return cmd, seen


def test_options_come_from_the_fields_with_their_defaults_help_and_choices():
    cmd, seen = _command()
    names = {p.name: p for p in cmd.params}
    assert set(names) == {"out", "limit", "bf16", "tags", "mu", "kind"}
    assert names["out"].required and names["limit"].default is None
    assert names["mu"].default == 0.5 and names["mu"].help == "head mass"
    assert names["kind"].opts == ["--loss"] and list(names["kind"].type.choices) == ["akd", "fkl"]
    done = CliRunner().invoke(cmd, ["--out", "x", "--loss", "fkl", "--no-bf16", "--tags", "a",
                                    "--tags", "b", "--limit", "7"])
    assert done.exit_code == 0, done.output
    assert seen["config"] == Outer(out="x", limit=7, bf16=False, tags=("a", "b"),
                                   inner=Inner(kind="fkl"))
    assert CliRunner().invoke(cmd, ["--out", "x", "--loss", "rkl"]).exit_code == 2


def test_to_cli_args_round_trips_through_the_generated_command():
    config = Outer(out="x", limit=7, bf16=False, tags=("a", "b"), inner=Inner(mu=0.25))
    args = to_cli_args(config)
    assert args == ["--out", "x", "--limit", "7", "--no-bf16", "--tags", "a", "--tags", "b",
                    "--mu", "0.25"]
    cmd, seen = _command()
    assert CliRunner().invoke(cmd, args).exit_code == 0
    assert seen["config"] == config
    assert "--loss" in to_cli_args(config, all_fields=True)


def test_a_flag_declared_twice_is_refused():
    @dataclass
    class Clash:
        mu: float = 1.0
        inner: Inner = field(default_factory=Inner)

    with pytest.raises(TypeError, match="--mu is declared twice"):
        dataclass_options(Clash)(lambda **kw: None)


@dataclass
class Sampling:
    n: int = setting(1, "samples")
    temperature: float = setting(0.0, "temperature")


@dataclass
class Rollout:
    """Shares Sampling's settings with other defaults: n=4, temperature 0.8."""
    out: str = setting(help="where")
    sampling: Sampling = field(default_factory=lambda: Sampling(n=4, temperature=0.8))


def test_a_nested_option_defaults_to_the_enclosing_fields_default_instance():
    cmd, seen = _command(Rollout)
    names = {p.name: p for p in cmd.params}
    assert (names["n"].default, names["temperature"].default) == (4, 0.8)
    assert [(f.name, d) for _, f, d in option_defaults(Rollout)] == [
        ("out", dataclasses.MISSING), ("n", 4), ("temperature", 0.8)]
    assert [(f.name, d) for _, f, d in option_defaults(Outer)][-2:] == [("mu", 0.5), ("kind", "akd")]
    assert CliRunner().invoke(cmd, ["--out", "x"]).exit_code == 0
    assert seen["config"] == Rollout(out="x")
    assert seen["config"].sampling == Sampling(n=4, temperature=0.8)
    assert Sampling() == Sampling(n=1, temperature=0.0)  # the class's own defaults are untouched


def test_build_config_keeps_the_enclosing_defaults_of_options_not_given():
    assert build_config(Rollout, {"out": "x", "n": 2}).sampling == Sampling(n=2, temperature=0.8)
    assert build_config(Outer, {"out": "x", "mu": 0.25}).inner == Inner(mu=0.25)


def test_to_cli_args_compares_a_nested_setting_with_the_commands_default():
    assert to_cli_args(Rollout(out="x")) == ["--out", "x"]
    # 1 is Sampling's own default but not this command's: it must be written
    config = Rollout(out="x", sampling=Sampling(n=1, temperature=0.8))
    args = to_cli_args(config)
    assert args == ["--out", "x", "--n", "1"]
    cmd, seen = _command(Rollout)
    assert CliRunner().invoke(cmd, args).exit_code == 0
    assert seen["config"] == config
    assert to_cli_args(Rollout(out="x"), all_fields=True) == ["--out", "x", "--n", "4",
                                                             "--temperature", "0.8"]


def test_declared_choices_are_checked_once_for_every_field_nested_ones_included():
    from common.settings import choice_problems
    from stages.distill import DistillConfig, DistillConfigError

    config = DistillConfig(caches=("c",))
    assert choice_problems(config) == []
    object.__setattr__(config, "device", "tpu")
    assert choice_problems(config) == ["--device must be one of auto, cpu, cuda, got 'tpu'"]
    with pytest.raises(DistillConfigError, match="--precision must be one of auto, bf16, float32, got 'fp8'"):
        DistillConfig(caches=("c",), precision="fp8")


def test_unknown_option_names_are_refused_by_every_config_that_builds_from_flat_options():
    from stages.distill import DistillConfig, DistillConfigError
    from stages.teacher import TeacherCacheConfig, TeacherConfigError

    with pytest.raises(DistillConfigError, match="unknown distill option.*: lrr"):
        DistillConfig.from_options({"caches": ["c"], "lrr": 1})
    with pytest.raises(TeacherConfigError, match="unknown TeacherCacheConfig option.*: kk"):
        TeacherCacheConfig.from_options({"model": "m", "dataset": "d", "out_dir": "o", "kk": 3})
