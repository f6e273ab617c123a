"""One bridge from akd's errors to the command line: user_errors, one line, every error class."""
import ast
import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import FIXABLE_ERRORS, user_errors
from test_cache_schema import make_example, write_cache

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("cache_schema", "common", "inference", "stages", "study", "model_tools", "pipeline")
# Error classes that never reach a command: each is caught or translated where it is raised.
INTERNAL = {
    "stages.evaluate.jail.SetupError": "the jail's setup failure; jail.py falls back and reports it",
    "stages.distill.losses.config.LossInputError": "DistillConfig.loss_config turns it into DistillConfigError; "
                                                   "elsewhere it is a bad tensor, a bug",
}


def declared_error_classes() -> list[str]:
    """module.Class for every class akd declares whose name ends in Error."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    found.append(f"{module}.{node.name}")
    return found


def test_every_error_class_reaches_the_user_as_one_line_or_is_internal():
    classes = declared_error_classes()
    assert "stages.teacher.responses_file.ResponsesFileError" in classes  # the walk finds them
    uncaught = []
    for name in classes:
        module, cls = name.rsplit(".", 1)
        if name not in INTERNAL and not issubclass(getattr(importlib.import_module(module), cls), FIXABLE_ERRORS):
            uncaught.append(name)
    assert not uncaught, f"add to FIXABLE_ERRORS (pipeline/errors.py) or to INTERNAL here: {uncaught}"
    assert set(INTERNAL) <= set(classes)  # no stale entries


def test_a_multi_line_message_becomes_one_line():
    from cache_schema import CacheError

    with pytest.raises(click.ClickException) as caught, user_errors():
        raise CacheError("shard w000-00001.parquet: cannot read\n  ArrowInvalid: bad footer\n")
    assert caught.value.message == "CacheError: shard w000-00001.parquet: cannot read; ArrowInvalid: bad footer"


@pytest.mark.parametrize("command, says", [("verify", "no manifest"), ("finalize", "no worker parts"),
                                           ("inspect", "no manifest")])
def test_cache_commands_print_an_empty_folder_as_one_line(tmp_path, command, says):
    result = CliRunner().invoke(main, ["cache", command, str(tmp_path)])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: CacheError: ") and says in result.output


def test_cache_inspect_names_an_unreadable_shard_in_one_line(tmp_path):
    """Listing examples read the shards outside the old try block: a traceback."""
    write_cache(tmp_path, [make_example(i) for i in range(3)])
    shard = next((tmp_path / "shards").glob("*.parquet"))
    shard.write_bytes(b"PAR1 not really parquet PAR1")
    result = CliRunner().invoke(main, ["cache", "inspect", str(tmp_path), "--examples", "1"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: CacheVerifyError: ") and shard.name in last, result.output
