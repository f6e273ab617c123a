"""The report prints the settings each training run recorded, and flags what the grid did not ask for."""
import json
from types import SimpleNamespace

from stages.distill.config import DistillConfig
from stages.distill.mixing import CacheMix, MixedCache
from stages.distill.run_folder import CONFIG_FILE
from stages.distill.rundir import run_record
from study.grid_v2.budget import BUDGET_FILE
from study.grid_v2.config import ExperimentConfig
from study.grid_v2.plan import build_plan
from study.grid_v2.report import run_settings
from study.grid_v2.tables import markdown_report


def _manifest(k: int, teacher_template: str):
    identity = {"teacher": {"model": "t"}, "tokenizer_fingerprint": "sha256:x", "sampling": {}, "dataset": {},
                "templates": {"teacher": {"name": teacher_template, "user": "{instruction}"},
                              "student": {"name": "plain", "user": "{instruction}"}}}
    return SimpleNamespace(identity=identity, k=k, vocab_size=10, encoding="compact", format_version=2,
                           rows=4, response_tokens=40, shards=[])


def _record_run(step, manifest, **options):
    """config.json as the trainer writes it, for the options the run really got."""
    config = DistillConfig.from_options({"caches": ("c",), "student": "s", "kind": step.meta["loss"],
                                         "max_seq_len": 128, **options})
    mix = CacheMix(caches=(MixedCache(path="c", label="c", probability=1.0,
                                      reader=SimpleNamespace(manifest=manifest)),),
                   weighted=False, k=manifest.k)
    step.output.mkdir(parents=True)
    (step.output / CONFIG_FILE).write_text(json.dumps(run_record(config, mix, "sha256:x", 10, 1, "float32"), default=str))


def _choose(root, template: str, lr: float, steps: int):
    """The template and lr choices and the budget the training commands read."""
    (root / "choices").mkdir(parents=True)
    (root / "choices" / "template.json").write_text(json.dumps({"chosen": template}))
    (root / "choices" / "lr.json").write_text(json.dumps({"chosen": lr}))
    run = {"steps": steps, "warmup_steps": 0, "eval_every": 1, "checkpoint_every": steps, "keep_checkpoints": 1}
    (root / BUDGET_FILE).write_text(json.dumps({"train_examples": 16, "micro_batches": 8, "grad_accum": 2,
                                                "full": run, "sweep": run, "small": run}))


def test_the_report_shows_recorded_settings_and_flags_a_run_that_differs(tmp_path):
    config = ExperimentConfig(out_dir=str(tmp_path), student="student", losses="fkl", small_losses="",
                              seed=5, k=12, max_batch_tokens=256)
    _choose(tmp_path, "enhanced_user", 3e-6, 7)
    steps = build_plan(config)
    train = {s.meta["model"]: s for s in steps if s.kind == "train"}
    _record_run(train["fkl"], _manifest(12, "enhanced_user"), lr=3e-6, max_steps=7, seed=5, max_batch_tokens=256)
    # this run got another lr and batch size, and its cache was made with another k and template
    _record_run(train["akd"], _manifest(20, "enhanced"), lr=2e-5, max_steps=7, seed=5, max_batch_tokens=512)

    rows = {row["run"]: row for row in run_settings(steps)}
    assert rows["fkl"]["differs"] == {}
    assert rows["fkl"] | {"differs": None} == {
        "run": "fkl", "loss": "fkl", "lr": 3e-6, "max_steps": 7, "max_batch_tokens": 256,
        "seed": 5, "k": 12, "teacher_template": "enhanced_user", "student_template": "plain", "differs": None}
    assert rows["akd"]["differs"] == {"lr": "3e-06", "max_batch_tokens": "256", "k": "12",
                                      "teacher_template": "enhanced_user"}

    report = {"progress": {"pending": [], "done": 1, "steps": 1}, "config": config.to_dict(),
              "run_settings": list(rows.values())}
    markdown = markdown_report(report, {})
    assert "| fkl | fkl | 3e-06 | 7 | 256 | 12 | enhanced_user | plain | 5 |" in markdown
    assert ("| akd (!) | akd | **2e-05** (asked 3e-06) | 7 | **512** (asked 256) | "
            "**20** (asked 12) | **enhanced** (asked enhanced_user) | plain | 5 |") in markdown
    assert "1 run(s) recorded settings other than the grid asked for** (akd)" in markdown


def test_a_run_that_has_not_started_records_nothing(tmp_path):
    config = ExperimentConfig(out_dir=str(tmp_path), small_losses="")
    assert run_settings(build_plan(config)) == []  # and the choices not made yet are no error
