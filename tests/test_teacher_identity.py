"""What makes a cache (or a rollout's responses folder) resumable is pinned here, key by key:
a refactor of the configs must leave these dicts as they were, or every existing cache
would be refused as "made with other settings"."""
import json

import pytest

import common.machine
from cache_schema import tokenizer_fingerprint
from common.files import file_sha256
from common.settings import build_config
from inference.templates import get_template
from stages.teacher import RolloutConfig, TeacherCacheConfig
from stages.teacher.build import _run_settings
from stages.teacher.identity import cache_identity
from stages.teacher.rollout import rollout_identity
from stages.teacher.rows import open_dataset


class StubTokenizer:
    def get_vocab(self):
        return {"a": 0, "b": 1}


TOKENIZER = StubTokenizer()
FINGERPRINT = tokenizer_fingerprint(TOKENIZER)
DATASET_IDENTITY = {"source": "rows.jsonl", "sha256": "sha256:0", "tag": "rows",
                    "fields": {"instruction": "instruction", "input": "input", "output": "output"}}
SAMPLING = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "n": 1, "max_new_tokens": 512}


@pytest.fixture(autouse=True)
def bf16_cpu(monkeypatch):
    """A CPU that computes bf16, where `auto` stays `auto` (on others it is float32, below)."""
    monkeypatch.setattr(common.machine, "machine_facts", lambda: {"isa": ["avx512_bf16"]})


def _teacher(**options):
    return build_config(TeacherCacheConfig, {"model": "org/teacher", "dataset": "rows.jsonl",
                                             "out_dir": "cache", **options})


def _rollout(**options):
    return build_config(RolloutConfig, {"model": "org/student", "dataset": "rows.jsonl",
                                        "out": "responses", **options})


def _cache_identity(config, responses=None):
    return cache_identity(config, TOKENIZER, get_template(config.teacher_template),
                          get_template(config.student_template), DATASET_IDENTITY, responses)


def test_the_identity_of_a_default_cache_is_unchanged():
    assert _cache_identity(_teacher()) == {
        "teacher": {"model": "org/teacher", "revision": None, "backend": "vllm", "dtype": "auto"},
        "tokenizer_fingerprint": FINGERPRINT,
        "student_tokenizer": None,
        "templates": {"teacher": get_template("enhanced").to_dict(),
                      "student": get_template("plain").to_dict()},
        "sampling": SAMPLING,
        "dataset": DATASET_IDENTITY,
    }


def test_the_identity_carries_each_chosen_setting_under_its_old_key():
    config = _teacher(revision="r1", backend="hf", dtype="float32", student_tokenizer="org/student",
                      temperature=0.7, top_p=0.9, seed=3, n=2, max_new_tokens=64,
                      # settings that shape the run, not the cache: not in the identity
                      offset=5, limit=10, chunk_size=7, rows_per_shard=9, max_model_len=999)
    identity = _cache_identity(config)
    assert identity["teacher"] == {"model": "org/teacher", "revision": "r1", "backend": "hf",
                                   "dtype": "float32"}
    assert identity["student_tokenizer"] == "org/student"
    assert identity["sampling"] == {"temperature": 0.7, "top_p": 0.9, "seed": 3, "n": 2,
                                    "max_new_tokens": 64}
    assert set(identity) == {"teacher", "tokenizer_fingerprint", "student_tokenizer", "templates",
                             "sampling", "dataset"}


def test_score_mode_identity_is_unchanged():
    responses = {"source": "dataset_field", "field": "output", "end_of_turn_id": 2}
    identity = _cache_identity(_teacher(responses_from="output"), responses)
    assert identity["sampling"] is None and identity["responses"] == responses


def test_the_run_settings_recorded_in_the_manifest_are_unchanged():
    assert _run_settings(_teacher()) == {
        "offset": 0, "limit": None, "num_workers": 1, "max_model_len": 4096, "tensor_parallel_size": 1,
        "chunk_size": 64, "rows_per_shard": 128, "hf_batch_size": 8, "skip_bad_lines": False}
    assert _run_settings(_teacher(offset=3, limit=0, chunk_size=5))["limit"] is None


def test_the_identity_of_a_default_rollout_is_unchanged():
    template = get_template("plain")
    assert rollout_identity(_rollout(), TOKENIZER, template, DATASET_IDENTITY) == {
        "model": {"model": "org/student", "revision": None, "backend": "vllm", "dtype": "auto"},
        "tokenizer_fingerprint": FINGERPRINT,
        "template": template.to_dict(),
        "sampling": {"temperature": 0.8, "top_p": 1.0, "seed": 0, "n": 4, "max_new_tokens": 512},
        "dataset": DATASET_IDENTITY,
    }


def test_the_dataset_identity_of_a_local_file_is_unchanged(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi", "input": "", "output": "hi"}) + "\n")
    config = _teacher(dataset=str(path))
    _, identity, bad = open_dataset(config.data, config.output_field, config.skip_bad_lines)
    assert bad == {}
    assert identity == {"source": "rows.jsonl", "sha256": "sha256:" + file_sha256(path), "tag": "rows",
                        "fields": {"instruction": "instruction", "input": "input", "output": "output"}}
    # a rollout reads the rows as stage one does, without the (unused) output column
    rollout = _rollout(dataset=str(path), input_field="")
    _, identity, _ = open_dataset(rollout.data)
    assert identity["fields"] == {"instruction": "instruction", "input": None, "output": None}


def test_a_cpu_that_emulates_bf16_records_the_float32_it_computes_in(monkeypatch):
    monkeypatch.setattr(common.machine, "machine_facts", lambda: {"isa": ["avx2"]})
    assert _cache_identity(_teacher(backend="hf"))["teacher"]["dtype"] == "float32"
    assert _cache_identity(_teacher(backend="hf", dtype="bfloat16"))["teacher"]["dtype"] == "bfloat16"
