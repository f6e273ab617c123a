"""Bad input ends in one line naming the culprit, and nothing already written is lost (issue 21):
model folders, damaged or empty datasets, empty selections, full disks, through the one error
translation every command goes through."""
import errno
import gzip
import json
import os
import shutil

import click
import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from teacher_data import GOOD, write_rows  # noqa: E402

from cache_schema import CacheReader  # noqa: E402
from common.files import DiskFullError, names_full_disk  # noqa: E402
from common.model_folders import ModelFolderError, check_model  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.errors import AkdCommand, AkdGroup  # noqa: E402


def one_error_line(result, *fragments) -> str:
    """The run failed with exit 1 and exactly one `Error:` line holding every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def akd(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- one mechanism --------------------------------------------------------------------------

def _walk(command, path=("akd",)):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def test_every_command_runs_through_the_one_error_translation():
    found = list(_walk(main))
    assert len(found) > 15
    wrong = [" ".join(path) for path, cmd in found
             if not isinstance(cmd, AkdGroup if isinstance(cmd, click.Group) else AkdCommand)]
    assert not wrong, f"declare them with pipeline.errors.akd_command / akd_group: {wrong}"


# ---- model folders --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_only(tiny_student, tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tok") / "tokenizer-only"
    AutoTokenizer.from_pretrained(tiny_student).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def no_weights(tokenizer_only, tiny_student, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nw") / "config-no-weights"
    shutil.copytree(tokenizer_only, folder)
    shutil.copy(tiny_student / "config.json", folder)
    return folder


@pytest.mark.parametrize("backend", ["hf", "vllm"])
@pytest.mark.parametrize("which, says", [("missing", "no such folder"), ("tokenizer_only", "no config.json"),
                                         ("no_weights", "no weights")])
def test_eval_names_a_model_folder_it_cannot_load(which, says, backend, tokenizer_only, no_weights, tmp_path):
    model = {"missing": tmp_path / "nowhere", "tokenizer_only": tokenizer_only, "no_weights": no_weights}[which]
    result = akd("eval", "--model", model, "--backend", backend, "--out", tmp_path / "e", "--limit", 1,
                 "--models-dir", tmp_path)
    one_error_line(result, "ModelFolderError", f"--model {model}", says)
    assert not (tmp_path / "e").exists()


def test_teacher_cache_names_a_missing_teacher_and_a_folder_without_a_tokenizer(tiny_teacher, tmp_path):
    rows = tmp_path / "rows.jsonl"
    write_rows(rows)
    common = ["--dataset", rows, "--out", tmp_path / "c", "--backend", "hf", "--models-dir", tmp_path]
    one_error_line(akd("teacher-cache", "--teacher", tmp_path / "nowhere", *common),
                   f"--teacher {tmp_path / 'nowhere'}: no such folder")
    (tmp_path / "empty").mkdir()
    one_error_line(akd("teacher-cache", "--teacher", tiny_teacher, "--student-tokenizer", tmp_path / "empty", *common),
                   f"--student-tokenizer {tmp_path / 'empty'}: no tokenizer")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", [["rollout", "--model", "{m}", "--out", "{o}"],
                                     ["onpolicy", "run", "--student", "{m}", "--out-dir", "{o}"],
                                     ["experiment", "run", "--student", "{m}", "--out-dir", "{o}"],
                                     ["speed", "--model", "{m}", "--out", "{o}"]])
def test_other_commands_name_a_missing_model_before_writing(command, tmp_path):
    model, out = tmp_path / "nowhere", tmp_path / "out"
    args = [a.format(m=model, o=out) for a in command]
    if command[0] == "rollout":
        rows = tmp_path / "rows.jsonl"
        write_rows(rows)
        args += ["--dataset", str(rows)]
    one_error_line(akd(*args, "--models-dir", tmp_path), f"{model}: no such folder")
    assert not out.exists()


def test_a_hub_id_is_refused_only_when_offline_and_not_cached(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("common.model_folders._hub_offline", lambda: True)
    with pytest.raises(ModelFolderError, match="not in the local Hugging Face cache"):
        check_model("some-org/some-model")
    (tmp_path / "models").mkdir()  # now models/foo is a path, not a Hub id
    with pytest.raises(ModelFolderError, match="models/foo: no such folder"):
        check_model("models/foo")
    monkeypatch.setattr("common.model_folders._hub_offline", lambda: False)
    check_model("some-org/some-model")  # online: the Hub client decides


# ---- datasets -------------------------------------------------------------------------------

def _truncated_gz(path, text):
    whole = gzip.compress(text.encode())
    path.write_bytes(whole[: len(whole) // 2])
    return path


@pytest.mark.parametrize("name, write, says", [
    ("rows.jsonl.gz", lambda p: _truncated_gz(p, "".join(json.dumps({"instruction": f"task {i}"}) + "\n"
                                                        for i in range(400))), "cut short or damaged"),
    ("rows.json.gz", lambda p: _truncated_gz(p, json.dumps([{"instruction": f"task {i}"} for i in range(400)])),
     "cut short or damaged"),
    ("rows.json", lambda p: p.write_text(""), "has no rows"),
    ("rows.jsonl", lambda p: p.write_text("\n\n"), "has no rows"),
    ("rows.json", lambda p: p.write_text("[]"), "has no rows"),
])
def test_a_damaged_or_empty_dataset_is_one_line_naming_it(name, write, says, tiny_teacher, tmp_path):
    path = tmp_path / name
    write(path)
    result = akd("teacher-cache", "--teacher", tiny_teacher, "--dataset", path, "--out", tmp_path / "c",
                 "--backend", "hf")
    one_error_line(result, "TeacherConfigError", f"--dataset {path}", says)
    assert not (tmp_path / "c").exists()


def test_a_selection_of_no_usable_rows_writes_no_cache(tiny_teacher, tmp_path):
    rows = tmp_path / "rows.jsonl"
    write_rows(rows)
    out = tmp_path / "c"
    base = ["teacher-cache", "--teacher", tiny_teacher, "--dataset", rows, "--out", out, "--backend", "hf"]
    one_error_line(akd(*base, "--offset", 10_000), "--offset 10000 selects no rows", str(rows))
    empty = tmp_path / "empty-instructions.jsonl"
    empty.write_text("".join(json.dumps({"instruction": "", "input": "", "output": ""}) + "\n" for _ in range(3)))
    one_error_line(akd(*base[:4], empty, *base[5:]), "none of the 3 selected rows is usable", "3 empty_instruction")
    assert not out.exists()


# ---- full disks -----------------------------------------------------------------------------

@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("Error while serializing: I/O error: No space left on device "
                                                "(os error 28)")])
def test_a_full_disk_becomes_one_error_naming_the_folder(error, tmp_path):
    with pytest.raises(DiskFullError, match=f"holds {tmp_path}.*then rerun it"):
        with names_full_disk(tmp_path, "rerun it"):
            raise error


def test_torch_saves_mute_failure_is_read_from_the_device_and_other_errors_pass(tmp_path, monkeypatch):
    torch_says = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    with pytest.raises(RuntimeError, match="unexpected pos"), names_full_disk(tmp_path, "x"):
        raise torch_says  # the device has room: a real error, passed on
    monkeypatch.setattr("common.files.NEARLY_FULL_BYTES", 1 << 62)  # every device is "nearly full"
    with pytest.raises(DiskFullError, match="unexpected pos"), names_full_disk(tmp_path, "x"):
        raise torch_says
    with pytest.raises(KeyError), names_full_disk(tmp_path, "x"):
        raise KeyError("a bug stays a bug")


def test_teacher_cache_on_a_full_disk_says_where_keeps_its_shards_and_resumes(tiny_teacher, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    rows = tmp_path / "rows.jsonl"
    write_rows(rows)
    out = tmp_path / "c"
    args = ["teacher-cache", "--teacher", tiny_teacher, "--dataset", rows, "--out", out, "--backend", "hf",
            "--k", 4, "--max-new-tokens", 4, "--max-model-len", 512, "--rows-per-shard", 3, "--no-progress",
            "--dtype", "float32"]
    real_write, writes = pq.ParquetWriter.write_table, []

    def second_fails(self, *a, **k):
        writes.append(1)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real_write(self, *a, **k)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", second_fails)
    one_error_line(akd(*args), f"DiskFullError: no space left on the device that holds {out}",
                   "rerun the same command: it resumes")
    kept = sorted(p.name for p in (out / "shards").iterdir())  # complete shards only: the temporary is gone
    assert kept == [f"w000-{i:05d}.parquet" for i in range(len(writes) - 1)] and kept
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)
    assert akd(*args).exit_code == 0
    ids = [r.example_id for r in CacheReader(out)]
    assert len(ids) == len(set(ids)) == len(GOOD)


def test_distill_on_a_full_disk_says_where_and_resumes(tiny_student, tiny_teacher, tmp_path, monkeypatch):
    from distill_cache import teacher_cache

    cache = teacher_cache(tiny_teacher, tmp_path / "cache", examples=8, max_new_tokens=6, k=4)
    args = ["distill", "--cache", cache, "--student", tiny_student, "--runs-dir", tmp_path / "runs",
            "--max-steps", 2, "--checkpoint-every", 1, "--precision", "float32", "--no-progress", "--no-plots",
            "--max-batch-tokens", 128, "--max-seq-len", 128, "--eval-fraction", 0, "--num-workers", 0]
    import stages.distill.trainer as trainer

    real_save = trainer.save_checkpoint
    saves = []

    def second_fails(*a, **k):
        saves.append(1)
        if len(saves) == 2:  # what torch.save says when the device is full
            monkeypatch.setattr("common.files.NEARLY_FULL_BYTES", 1 << 62)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        return real_save(*a, **k)

    monkeypatch.setattr(trainer, "save_checkpoint", second_fails)
    run = tmp_path / "runs" / f"{tiny_student.name}-akd"
    one_error_line(akd(*args), f"no space left on the device that holds {run}", "resumes from the last checkpoint")
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    monkeypatch.setattr("common.files.NEARLY_FULL_BYTES", 16 << 20)
    again = akd(*args)
    assert again.exit_code == 0, again.output
    assert (run / "final" / "config.json").exists()


def test_eval_on_a_full_disk_says_where_and_keeps_what_it_saved(tiny_teacher, tmp_path, monkeypatch):
    import stages.evaluate.run as run

    real_write, writes = run._write_json, []

    def summary_fails(path, data):
        writes.append(path.name)
        if path.name == "summary.json" and path.parent == tmp_path / "e":  # the model's summary, last
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(run, "_write_json", summary_fails)
    args = ["eval", "--model", tiny_teacher, "--out", tmp_path / "e", "--backend", "hf", "--benchmark", "humaneval",
            "--limit", 1, "--max-new-tokens", 8, "--trust-model-code", "--models-dir", tmp_path]
    one_error_line(akd(*args), f"no space left on the device that holds {tmp_path / 'e'}",
                   "it reuses the answers already saved")
    answers = tmp_path / "e" / "humaneval" / "generations.jsonl"
    stamp = answers.stat().st_mtime_ns  # the answers stay
    monkeypatch.setattr(run, "_write_json", real_write)
    again = akd(*args)
    assert again.exit_code == 0, again.output
    assert answers.stat().st_mtime_ns == stamp and (tmp_path / "e" / "summary.json").exists()  # reused, finished
