"""Every model folder akd writes carries a model card the Hugging Face Hub reads (issue 23):
the distilled final/ and a pruned model; `akd eval` adds its scores and never a number it did
not measure."""
import json
import os

import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common.model_card import CARD_FILE, render, sections, set_section, write_card  # noqa: E402
from distill_cache import teacher_cache  # noqa: E402
from pipeline.cli import main  # noqa: E402
from stages.distill import DistillConfig, train  # noqa: E402
from stages.evaluate.card_section import evaluation_section  # noqa: E402

ModelCard = pytest.importorskip("huggingface_hub").ModelCard


@pytest.fixture(scope="module")
def distilled(tiny_teacher, tiny_student, tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    cache = teacher_cache(tiny_teacher, root / "cache", examples=8, max_new_tokens=6, k=4)
    config = DistillConfig.from_options(dict(
        caches=[str(cache)], student=str(tiny_student), run_dir=str(root / "run"), max_steps=3, lr=1e-3,
        warmup_steps=0, precision="float32", progress=False, plots=False, num_workers=0, max_batch_tokens=128,
        max_seq_len=128, max_batch_examples=4, eval_fraction=0.25, threads=1, final_dtype="float32"))
    return root, train(config)


def test_the_distilled_folder_has_a_card_the_hub_parses_with_what_was_measured(distilled, tiny_student):
    root, summary = distilled
    final = root / "run" / "final"
    card = ModelCard.load(final / CARD_FILE)
    data = card.data.to_dict()
    assert data["base_model"] == tiny_student.name and data["library_name"] == "transformers"
    assert {"distillation", "code"} <= set(data["tags"]) and data["teacher"] == ["tiny-teacher"]
    text = (final / CARD_FILE).read_text()
    assert str(root) not in text and str(tiny_student.parent) not in text  # no path of this machine
    evals = [r for r in summary["metrics"] if r["split"] == "eval"]
    tokens = sum(r["tokens"] for r in summary["metrics"] if r["split"] == "train")
    assert f"3 optimizer steps at lr 0.001 (float32), {tokens:,} response tokens seen" in text
    assert f"| forward KL to the teacher | {evals[0]['eval_fkl']:.4f} | {evals[-1]['eval_fkl']:.4f} |" in text
    assert "AKD" in text and "| cache | tiny-teacher | plain | plain | 4 | 8 |" in text
    assert "Not evaluated yet" in sections(final)["evaluation"]


def test_eval_fills_the_evaluation_section_and_leaves_the_rest(distilled, monkeypatch):
    import stages.evaluate

    root, _ = distilled
    final = root / "run" / "final"
    before = sections(final)
    scored = {"split": "test", "mode": "instruct", "n_samples": 1, "temperature": 0.0, "max_new_tokens": 512,
              "backend": "hf", "benchmarks": {"humaneval": {"pass@1": 0.25, "n_tasks": 164},
                                              "mbpp": {"pass@1": 0.5, "n_tasks": 500}}}
    monkeypatch.setattr(stages.evaluate, "evaluate_model", lambda config, **_: scored)
    result = CliRunner().invoke(main, ["eval", "--model", str(final), "--out", str(root / "e")])
    assert result.exit_code == 0, result.output
    after = sections(final)
    assert "| humaneval | test | 25.0% | 164 |" in after["evaluation"] and "| mbpp | test | 50.0% | 500 |" in \
        after["evaluation"]
    assert {k: v for k, v in after.items() if k != "evaluation"} == \
        {k: v for k, v in before.items() if k != "evaluation"}
    ModelCard.load(final / CARD_FILE)  # still a card the Hub reads


def test_a_card_that_is_not_akds_is_left_alone(tmp_path):
    (tmp_path / CARD_FILE).write_text("# Someone's model\n\nTheir words.\n")
    assert not set_section(tmp_path, "evaluation", "## Evaluation\n\nx")
    assert (tmp_path / CARD_FILE).read_text() == "# Someone's model\n\nTheir words.\n"
    assert not set_section(tmp_path / "nowhere", "evaluation", "x")


def test_sections_are_replaced_or_appended_in_place(tmp_path):
    write_card(tmp_path, {"base_model": "m", "tags": ["code"]}, "m", {"a": "first", "b": "second"})
    assert set_section(tmp_path, "a", "changed") and set_section(tmp_path, "c", "new")
    assert sections(tmp_path) == {"a": "changed\n", "b": "second\n", "c": "new\n"}
    assert ModelCard.load(tmp_path / CARD_FILE).data.to_dict()["base_model"] == "m"
    assert render({"x": 1}, "t", {}).startswith("---\nx: 1\n---\n\n# t\n")


def test_an_evaluation_section_states_its_settings():
    text = evaluation_section({"split": "test", "mode": "instruct", "n_samples": 5, "temperature": 0.8,
                               "max_new_tokens": 384, "backend": "vllm",
                               "benchmarks": {"humaneval": {"pass@1": 0.123, "n_tasks": 164}}})
    assert "5 sample(s) per task at temperature 0.8, up to 384 new tokens, vllm backend" in text
    assert "| humaneval | test | 12.3% | 164 |" in text


def test_local_model_folders_appear_by_name_only(tmp_path, monkeypatch):
    from stages.distill.model_card import write_student_card

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "big-teacher").mkdir(parents=True)
    (tmp_path / "models" / "small").mkdir()
    record = {"options": {"loss": {"kind": "fkl"}, "lr": 1e-5}, "precision": "bf16",
              "student": {"name": "models/small"},
              "mix": {"k": 20, "caches": [{"label": "c", "teacher": {"model": "models/big-teacher"}, "k": 20,
                                           "rows": 5, "templates": {"teacher": {"name": "plain"}, "student": "plain"},
                                           "dataset": {"source": "rows.jsonl"}}]}}
    write_student_card(tmp_path, record, [], {"steps": 4})
    text = (tmp_path / CARD_FILE).read_text()
    assert "models/" not in text and "| c | big-teacher | plain | plain | 20 | 5 |" in text
    assert ModelCard.load(tmp_path / CARD_FILE).data.to_dict()["base_model"] == "small"


def test_the_accuracy_loss_is_stated_only_against_a_teacher_scored_the_same_way(tmp_path):
    scoring = {"mode": "instruct", "split": "test", "limit": None, "n_samples": 1, "temperature": 0.0,
               "max_new_tokens": 512, "backend": "vllm"}
    student = {**scoring, "role": "distilled", "benchmarks": {"humaneval": {"pass@1": 0.45, "n_tasks": 164}}}
    teacher = {**scoring, "kind": "akd-eval", "role": "teacher", "model": "models/teacher",
               "benchmarks": {"humaneval": {"pass@1": 0.6, "n_tasks": 164}}}
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "summary.json").write_text(json.dumps({**teacher, "max_new_tokens": 256}))
    text = evaluation_section(student, tmp_path)
    assert "accuracy loss" not in text.split("\n\n")[2] and "No accuracy loss against the teacher is stated" in text
    (tmp_path / "teacher" / "summary.json").write_text(json.dumps(teacher))
    text = evaluation_section(student, tmp_path)
    assert "| humaneval | test | 45.0% | 60.0% | 25.0% | 164 |" in text  # (0.6 - 0.45) / 0.6
    assert f"`{tmp_path / 'teacher'}` (models/teacher)" in text
