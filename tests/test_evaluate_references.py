"""`akd data references`: MBPP's train-split reference programs as a dataset a teacher scores."""
import json
import os

from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.cli import main  # noqa: E402
from stages.evaluate.datasets import load_tasks  # noqa: E402
from stages.evaluate.prompts import build_prompt  # noqa: E402
from stages.evaluate.references import ReferenceAnswersConfig, reference_answers  # noqa: E402


def test_every_train_task_asks_the_eval_prompt_and_answers_its_reference(data_dir, tmp_path):
    out = tmp_path / "refs.jsonl"
    report = reference_answers(ReferenceAnswersConfig(out=str(out), data_dir=str(data_dir)))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tasks = load_tasks("mbpp", split="train", data_dir=data_dir)
    assert report["kept"] == report["n_tasks"] == len(rows) == len(tasks) == 374
    assert [r["task_id"] for r in rows] == [t.task_id for t in tasks]
    first, task = rows[0], tasks[0]
    assert first["instruction"] == build_prompt(task, "instruct").messages[0]["content"]
    assert first["output"].startswith("```python\n") and first["output"].endswith("\n```")
    assert first["output"][len("```python\n"):-len("\n```")] == task.reference.strip()
    assert json.loads((tmp_path / "refs.meta.json").read_text())["kept"] == 374


def test_the_command_says_the_count_and_offers_no_test_split(tmp_path):
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(main, ["data", "references", "--out", str(out)])
    assert result.exit_code == 0 and f"{out}: 374 of 374 mbpp train references" in result.output
    refused = CliRunner().invoke(main, ["data", "references", "--out", str(out), "--split", "test"])
    assert refused.exit_code == 2 and "'--split': 'test' is not 'train'" in refused.output


def test_the_file_feeds_teacher_cache_score_mode(tiny_teacher, data_dir, tmp_path):
    from cache_schema import CacheReader
    from stages.teacher import TeacherCacheConfig, build_teacher_cache
    from transformers import AutoTokenizer

    out = tmp_path / "refs.jsonl"
    reference_answers(ReferenceAnswersConfig(out=str(out), data_dir=str(data_dir)))
    config = TeacherCacheConfig.from_options(dict(
        model=str(tiny_teacher), dataset=str(out), out_dir=str(tmp_path / "c"), backend="hf", limit=3,
        responses_from="output", k=4, max_new_tokens=512, max_model_len=2048, progress=False,
        dtype="float32", teacher_template="plain"))
    build_teacher_cache(config)
    cached = list(CacheReader(tmp_path / "c").iter_examples())
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    rows = [json.loads(line) for line in out.read_text().splitlines()][:3]
    assert len(cached) == 3
    for record, row in zip(cached, rows):
        assert tokenizer.decode(record.response_ids.tolist()).startswith(row["output"][:30])
