"""Settings declared once: generated options, their defaults, and the way back to arguments."""
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner

from common.settings import build_config, setting, to_cli_args
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


def _command():
    seen = {}

    @click.command()
    @dataclass_options(Outer)
    def cmd(**options):
        seen["config"] = build_config(Outer, options)

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
