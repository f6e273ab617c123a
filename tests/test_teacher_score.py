"""Score mode and rollouts on the tiny model with the HF backend (fast).

The proof of alignment: the teacher scoring its own greedy answers reproduces the top-k it
cached while generating them (same ids, log-probs within 1e-3), at the engine and cache level.
"""
import json
import os
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cache_schema import CacheReader, tokenizer_fingerprint, verify_cache  # noqa: E402
from inference import SamplingSpec, load_engine, render_prompt  # noqa: E402
from inference.templates import get_template  # noqa: E402
from stages.teacher import (ResponsesFile, ResponsesFileError, RolloutConfig,  # noqa: E402
                            TeacherCacheConfig, TeacherConfigError, build_teacher_cache,
                            run_rollout)
from stages.teacher.responses_file import Response, ResponsesWriter  # noqa: E402
from teacher_data import GOOD, SKIPPED, check_alignment, write_rows  # noqa: E402

MAX_NEW = 8
TOL = 1e-3


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "instr.jsonl"
    return path, write_rows(path)


def cache_config(tiny_teacher, data_file, out_dir, **overrides):
    options = dict(model=str(tiny_teacher), dataset=str(data_file[0]), out_dir=out_dir,
                   backend="hf", k=4, max_new_tokens=MAX_NEW, max_model_len=512,
                   rows_per_shard=3, chunk_size=4, progress=False, dtype="float32")
    return TeacherCacheConfig.from_options({**options, **overrides})


def rollout_config(model, data_file, out, **overrides):
    options = dict(model=str(model), dataset=str(data_file[0]), out=out, backend="hf",
                   max_new_tokens=MAX_NEW, max_model_len=512, rows_per_shard=3, chunk_size=4,
                   progress=False, dtype="float32")
    return RolloutConfig.from_options({**options, **overrides})


def records(cache_dir):
    return {r.example_id: r for r in CacheReader(cache_dir).iter_examples()}


def assert_same_topk(scored, generated):
    """Same examples, responses and prompts; same top-k ids and log-probs within TOL."""
    assert scored.keys() == generated.keys()
    for eid, g in generated.items():
        s = scored[eid]
        assert s.prompt_ids.tolist() == g.prompt_ids.tolist()
        assert s.response_ids.tolist() == g.response_ids.tolist()
        assert s.finish_reason == g.finish_reason
        np.testing.assert_array_equal(s.topk_ids, g.topk_ids)
        np.testing.assert_allclose(s.topk_logprobs, g.topk_logprobs, atol=TOL, rtol=0)
        np.testing.assert_allclose(s.topk_mass, g.topk_mass, atol=TOL, rtol=0)


def responses_from_cache(cache_dir, out, tokenizer, template="plain", tag="instr"):
    """A responses file holding a cache's own (prompt, response) pairs."""
    identity = {"model": {"model": "from-cache"}, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
                "template": get_template(template).to_dict(), "sampling": {"temperature": 0.0},
                "dataset": {"tag": tag}}
    writer = ResponsesWriter.open(out, identity, rows_per_shard=5)
    for r in CacheReader(cache_dir).iter_examples():
        writer.add(Response(r.example_id, r.prompt_ids.tolist(), r.response_ids.tolist(),
                            r.finish_reason))
    writer.close()
    return out


@pytest.fixture(scope="module")
def generated(tiny_teacher, data_file, tmp_path_factory):
    config = cache_config(tiny_teacher, data_file, tmp_path_factory.mktemp("gen") / "c")
    build_teacher_cache(config)
    return config.out_dir


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_teacher)


def test_hf_engine_scores_reproduce_generation_topk(tiny_teacher):
    engine = load_engine(str(tiny_teacher), backend="hf", max_model_len=256, dtype="float32",
                         max_logprobs=6, batch_size=3)
    prompts = [render_prompt(engine.tokenizer, [{"role": "user", "content": t}]) for t in GOOD[:7]]
    for spec in (SamplingSpec(max_new_tokens=12, logprobs=6),
                 SamplingSpec(max_new_tokens=12, logprobs=6, temperature=1.0, seed=5)):
        gens = [g for (g,) in engine.generate(prompts, spec)]
        scores = engine.score(prompts, [g.token_ids for g in gens], 6)
        for g, s in zip(gens, scores):
            assert s.topk_ids.shape == (len(g.token_ids), 6)
            np.testing.assert_array_equal(s.topk_ids, g.topk_ids)
            np.testing.assert_allclose(s.topk_logprobs, g.topk_logprobs, atol=1e-4)
            np.testing.assert_allclose(s.token_logprobs, g.sampled_logprobs, atol=1e-4)
    engine.close()


def test_teacher_scoring_its_greedy_answers_reproduces_its_cache(generated, tiny_teacher,
                                                                 data_file, tokenizer, tmp_path):
    rollout = responses_from_cache(generated, tmp_path / "own", tokenizer)
    config = cache_config(tiny_teacher, data_file, tmp_path / "scored", responses_from=str(rollout))
    summary = build_teacher_cache(config)
    assert summary["mode"] == "score" and summary["examples_written"] == len(GOOD)
    assert summary["skipped"] == SKIPPED  # the dataset's bad rows, counted as in generation
    assert_same_topk(records(config.out_dir), records(generated))
    verify_cache(config.out_dir)
    manifest = CacheReader(config.out_dir).manifest
    source = manifest.identity["responses"]
    assert source["source"] == "rollout" and source["sha256"] == ResponsesFile(rollout).sha256
    assert source["model"] == {"model": "from-cache"} and manifest.identity["sampling"] is None
    from pipeline.cli import main

    info = CliRunner().invoke(main, ["cache", "inspect", str(config.out_dir)])
    assert info.exit_code == 0 and f"scored from rollout {rollout}" in info.output, info.output
    again = build_teacher_cache(config)  # resumes: nothing left to score
    assert again["examples_written"] == 0 and again["examples_already_cached"] == len(GOOD)


def test_rollout_then_score_matches_generation(tiny_teacher, data_file, tmp_path):
    gen = cache_config(tiny_teacher, data_file, tmp_path / "gen", teacher_template="plain", limit=9)
    build_teacher_cache(gen)
    out = tmp_path / "rollout"
    summary = run_rollout(rollout_config(tiny_teacher, data_file, out, n=1, temperature=0.0, limit=9))
    good = [i for i in data_file[1] if i < 9]
    assert summary["responses_written"] == summary["responses_in_file"] == len(good)
    header = ResponsesFile(out).header
    assert header["identity"]["sampling"]["n"] == 1 and header["complete"]
    assert header["identity"]["template"]["name"] == "plain"
    scored = cache_config(tiny_teacher, data_file, tmp_path / "scored", teacher_template="plain",
                          responses_from=str(out), limit=9)
    build_teacher_cache(scored)
    assert_same_topk(records(scored.out_dir), records(gen.out_dir))


def test_rollout_samples_resume_and_refuse_other_settings(tiny_student, data_file, tmp_path):
    out = tmp_path / "r"
    config = rollout_config(tiny_student, data_file, out, n=2, temperature=1.0, limit=10)
    first = run_rollout(config)
    good = [i for i in data_file[1] if i < 10]
    made = list(ResponsesFile(out))
    assert Counter(r.example_id for r in made) == Counter(f"instr:{i}:{s}" for i in good for s in (0, 1))
    assert first["skipped"] == {"empty_instruction": 1, "missing_instruction": 2}
    assert all(r.response_ids and r.finish_reason in ("stop", "length") for r in made)
    pairs = {}
    for r in made:
        pairs.setdefault(r.example_id.rsplit(":", 1)[0], []).append(r.response_ids)
    assert any(a != b for a, b in pairs.values())  # two samples of a row differ
    # A killed run: its last shard never appeared. The rerun writes exactly what is missing.
    header = json.loads((out / "responses.json").read_text())
    last = header["shards"].pop()
    (out / last["name"]).unlink()
    header["complete"] = False
    (out / "responses.json").write_text(json.dumps(header))
    with pytest.raises(ResponsesFileError, match="has not finished"):
        ResponsesFile(out)
    again = run_rollout(config)
    assert again["responses_written"] == last["rows"]
    again_made = list(ResponsesFile(out))
    assert sorted(r.example_id for r in again_made) == sorted(r.example_id for r in made)
    kept = {r.example_id: r.response_ids for r in made[:len(made) - last["rows"]]}
    assert {r.example_id: r.response_ids for r in again_made[:len(kept)]} == kept
    with pytest.raises(ResponsesFileError, match="other settings .*temperature"):
        run_rollout(rollout_config(tiny_student, data_file, out, n=2, temperature=0.7, limit=10))


def test_score_a_dataset_field_counts_bad_answers(tiny_teacher, data_file, tokenizer, tmp_path):
    rows = [json.loads(line) for line in data_file[0].read_text().splitlines()]
    good = data_file[1]
    answers = {good[0]: "def f():\n    return 1\n", good[1]: "", good[2]: None, good[3]: 42,
               good[4]: "x = 1 " * 600, good[5]: "print(1)<|im_end|>"}
    for row, answer in answers.items():
        rows[row]["output"] = answer
    path = tmp_path / "instr.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = cache_config(tiny_teacher, (path, good), tmp_path / "c", responses_from="output")
    summary = build_teacher_cache(config)
    assert summary["skipped"] == {**SKIPPED, "empty_response": 2, "non_string_response": 1,
                                  "response_too_long": 1}
    assert summary["examples_written"] == len(GOOD) - 4
    end = tokenizer.eos_token_id
    cached = records(config.out_dir)
    first = cached[f"instr:{good[0]}:0"].response_ids.tolist()
    assert first == tokenizer("def f():\n    return 1\n", add_special_tokens=False)["input_ids"] + [end]
    assert cached[f"instr:{good[5]}:0"].response_ids.tolist().count(end) == 1  # not ended twice
    assert cached[f"instr:{good[6]}:0"].response_ids.tolist()[-1] == end
    assert all(r.finish_reason == "stop" for r in cached.values())
    assert check_alignment(config.out_dir, tiny_teacher, good, greedy=False) == len(cached)
    identity = CacheReader(config.out_dir).manifest.identity["responses"]
    assert identity == {"source": "dataset_field", "field": "output", "end_of_turn_id": end}


def _rollout_file(out, tokenizer, rows, fingerprint=None, tag="instr"):
    identity = {"model": {"model": "m"}, "template": get_template("plain").to_dict(),
                "tokenizer_fingerprint": fingerprint or tokenizer_fingerprint(tokenizer),
                "sampling": {}, "dataset": {"tag": tag}}
    writer = ResponsesWriter.open(out, identity)
    for row in rows:
        writer.add(Response(*row))
    writer.close()
    return str(out)


def test_score_mode_bad_responses(tiny_teacher, data_file, tokenizer, tmp_path):
    good = data_file[1]
    plain = get_template("plain")
    prompt = {i: plain.render(tokenizer, GOOD[j], "numbers = 1, 2, 3" if j % 3 == 0 else "")
              for j, i in enumerate(good)}
    bad_row = next(i for i in range(len(good) + 6) if i not in good)  # a skipped (bad) row
    assert bad_row not in good
    rows = [(f"instr:{good[0]}:0", prompt[good[0]], [5, 6, 7], "stop"),
            (f"instr:{good[1]}:0", prompt[good[1]], [], "length"),
            (f"instr:{good[2]}:0", prompt[good[2]], [9] * 600, "length"),
            (f"instr:{good[3]}:1", prompt[good[3]], [8], "stop"),
            ("instr:9999:0", [1, 2], [3], "stop"), ("no-row-number", [1], [3], "stop"),
            (f"instr:{bad_row}:0", [1, 2], [3], "stop")]
    config = cache_config(tiny_teacher, data_file, tmp_path / "c",
                          responses_from=_rollout_file(tmp_path / "r", tokenizer, rows))
    summary = build_teacher_cache(config)
    assert summary["skipped"] == {**SKIPPED, "empty_response": 1, "response_too_long": 1,
                                  "prompt_missing_from_dataset": 2, "response_of_skipped_row": 1}
    assert set(records(config.out_dir)) == {f"instr:{good[0]}:0", f"instr:{good[3]}:1"}

    other = _rollout_file(tmp_path / "other", tokenizer, rows[:1], fingerprint="sha256:other")
    with pytest.raises(ResponsesFileError, match="another tokenizer than the teacher's"):
        build_teacher_cache(cache_config(tiny_teacher, data_file, tmp_path / "d", responses_from=other))
    tagged = _rollout_file(tmp_path / "tag", tokenizer, rows[:1], tag="alpaca")
    with pytest.raises(ResponsesFileError, match="rows of dataset 'alpaca'"):
        build_teacher_cache(cache_config(tiny_teacher, data_file, tmp_path / "e", responses_from=tagged))
    moved = _rollout_file(tmp_path / "moved", tokenizer,
                          [(f"instr:{good[0]}:0", prompt[good[1]], [5], "stop")])
    with pytest.raises(ResponsesFileError, match=f"example 'instr:{good[0]}:0' was sampled after another prompt"):
        build_teacher_cache(cache_config(tiny_teacher, data_file, tmp_path / "f", responses_from=moved))
    shard = next((tmp_path / "moved" / "shards").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ResponsesFileError, match="sha256 differs"):
        build_teacher_cache(cache_config(tiny_teacher, data_file, tmp_path / "g", responses_from=moved))
    with pytest.raises(TeacherConfigError, match="neither a responses file .* nor a column"):
        build_teacher_cache(cache_config(tiny_teacher, data_file, tmp_path / "h", responses_from="answer"))
    with pytest.raises(TeacherConfigError, match="--n: score mode"):
        cache_config(tiny_teacher, data_file, tmp_path / "i", responses_from="output", n=2,
                     temperature=1.0).validate()


def test_cli_errors_are_one_line(tiny_teacher, data_file, tmp_path):
    from pipeline.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["teacher-cache", "--teacher", str(tiny_teacher), "--dataset",
                                  str(data_file[0]), "--out", str(tmp_path / "c"), "--backend", "hf",
                                  "--responses-from", "answer"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--responses-from 'answer' is neither" in result.output
    result = runner.invoke(main, ["rollout", "--model", str(tiny_teacher), "--dataset",
                                  str(data_file[0]), "--out", str(tmp_path / "r"), "--backend", "hf",
                                  "--n", "2", "--temperature", "0"])
    assert result.exit_code == 1 and "--n: greedy decoding" in result.output
    result = runner.invoke(main, ["rollout", "--model", str(tiny_teacher), "--dataset",
                                  str(data_file[0]), "--out", str(tmp_path / "r"), "--backend", "hf",
                                  "--limit", "3", "--n", "1", "--max-new-tokens", "4",
                                  "--no-progress", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert len(list(ResponsesFile(tmp_path / "r"))) == 2
