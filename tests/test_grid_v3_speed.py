"""Grid v3's decode speeds (`akd speed` of teacher, student and pruned student on one CPU class)
and what the report makes of them: the pruned student's accuracy kept at its speed-up; and the
labelled extrapolation of the budget a "no" would need for a yes; the share of the pruning cost
the pruned student's distillation wins back."""
import json

import pytest

from study.grid_v3.config import GridV3Config
from study.grid_v3.plan import GridV3, build_plan

CPU = "avx512_bf16"


def _timed(grid: GridV3, cpu: str, model: str, tokens_per_s: float, parameters: int) -> None:
    """A finished `akd speed` step as a machine of class `cpu` leaves it: its record and speed.json."""
    folder = grid.speed_dir(model, cpu)
    folder.mkdir(parents=True, exist_ok=True)
    prompts, new_tokens = grid.config.speed_prompts, grid.config.speed_new_tokens
    (folder / "speed.json").write_text(json.dumps({
        "prompts": prompts, "new_tokens": new_tokens, "generated_tokens": prompts * new_tokens,
        "tokens_per_s": tokens_per_s, "parameters": parameters}))
    (grid.root / "steps").mkdir(parents=True, exist_ok=True)
    (grid.root / "steps" / f"speed-{model}@{cpu}.json").write_text(json.dumps({"status": "done"}))


def test_teacher_student_and_pruned_student_are_timed_once_the_pruned_student_is_scored(tmp_path):
    config = GridV3Config(out_dir=str(tmp_path), speed_prompts=8, speed_new_tokens=32)
    steps = build_plan(config, CPU)
    names = [s.name for s in steps]
    timed = [n for n in names if n.startswith("speed-")]
    assert timed == [f"speed-{m}@{CPU}" for m in ("teacher", "student", "small")]
    first = names.index(timed[0])
    assert names[first - 1] == f"eval-small-train-sampled@{CPU}" and names[first + 3] == "cache-codealpaca-parent"
    small = next(s for s in steps if s.name == f"speed-small@{CPU}")
    assert small.needs == ("prune-small",)
    command = small.command()
    assert command[0] == "speed" and command[command.index("--model") + 1] == str(GridV3(config, CPU).small_dir)
    assert command[command.index("--prompts") + 1] == "8" and command[command.index("--new-tokens") + 1] == "32"
    assert command[command.index("--out") + 1] == str(tmp_path / "speed" / CPU / "small")


def test_another_class_that_timed_all_three_is_not_timed_again_but_a_partial_one_is(tmp_path, monkeypatch):
    config = GridV3Config(out_dir=str(tmp_path))
    grid = GridV3(config, CPU)
    _timed(grid, "amx", "teacher", 130.0, 1_500_000_000)
    _timed(grid, "amx", "student", 380.0, 494_000_000)
    assert [n for n in (s.name for s in build_plan(config, CPU)) if n.startswith("speed-")] == [
        f"speed-{m}@{CPU}" for m in ("teacher", "student", "small")]  # amx has no pruned student's speed: all here
    _timed(grid, "amx", "small", 420.0, 416_000_000)
    assert not [s for s in build_plan(config, CPU) if s.kind == "speed"]
    assert set(grid.speeds_done()["amx"]) == {"teacher", "student", "small"}

    from click.testing import CliRunner

    import study.grid_v3.plan as plan
    from pipeline.cli import main

    monkeypatch.setattr(plan, "cpu_class", lambda facts: CPU)  # status run on an AVX-512 BF16 machine
    (tmp_path / "experiment.json").write_text(json.dumps({"out_dir": str(tmp_path)}))
    shown = CliRunner().invoke(main, ["experiment", "v3", "status", "--out-dir", str(tmp_path), "--keep-dir", ""])
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip().splitlines()[-1] == ("timed on another CPU class (speeds compare within a class): "
                                                     "speed-small@amx, speed-student@amx, speed-teacher@amx")


def test_the_estimate_costs_a_speed_from_the_profile():
    from study.engine.profiles import load_profile
    from study.grid_v3.cost import estimate

    config = GridV3Config(speed_prompts=10, speed_new_tokens=100)
    steps = [s for s in build_plan(config, CPU) if s.kind == "speed"]
    p = load_profile(CPU)
    rows = {r["step"]: r for r in estimate(config, steps, p)}
    teacher = rows[f"speed-teacher@{CPU}"]
    assert teacher["minutes"] == round((p["engine_s"] + 1000 / p["speed_tok_s"]["teacher"]) / 60, 1)
    assert teacher["basis"].startswith("10 prompts x 100 tokens at")


def test_the_report_states_the_accuracy_the_pruned_student_keeps_at_its_speed_up(tmp_path):
    from study.grid_v3.report import Scores, _size_speed, _speed_row, _speed_text

    grid = GridV3(GridV3Config(out_dir=str(tmp_path)), CPU)
    _timed(grid, CPU, "teacher", 40.0, 1_540_000_000)
    _timed(grid, CPU, "student", 120.0, 494_000_000)
    _timed(grid, CPU, "small", 150.0, 416_000_000)

    def rates(he: float, mbpp: float) -> dict:  # 2 HumanEval tasks, 2 MBPP tasks
        return {"humaneval": {"HumanEval/0": he, "HumanEval/1": he}, "mbpp": {"Mbpp/0": mbpp, "Mbpp/1": mbpp}}

    scores = Scores({CPU: {"teacher": rates(0.8, 0.6), "student": rates(0.6, 0.2), "small": rates(0.2, 0.0),
                           "small-akd": rates(0.4, 0.2), "small-ce": rates(0.2, 0.2)},
                     "amx": {"small-fkl": rates(1.0, 1.0)}}, {})  # scored on another class: not in this table
    rows = {r["model"]: r for r in _size_speed(grid, scores)}
    assert list(rows) == ["teacher", "student", "small", "small-akd", "small-ce"]
    assert rows["small"]["speedup_over_student"] == pytest.approx(1.25)
    assert rows["teacher"]["speedup_over_student"] == pytest.approx(1 / 3)
    assert rows["small-akd"]["timed_as"] == "small" and rows["small-akd"]["tokens_per_s"] == 150.0
    assert rows["small-akd"]["test_pass_at_1"] == pytest.approx(0.3)
    assert rows["small-akd"]["kept_of_student"] == pytest.approx(0.3 / 0.4)
    assert rows["small-akd"]["kept_of_teacher"] == pytest.approx(0.3 / 0.7)
    text = _speed_text(list(rows.values()))
    assert "at 1.25x the student's decode tokens/s" in text and "small-akd keeps 75% of the student's" in text
    assert "(43% of the teacher's)" in text
    assert _speed_row(rows["small-akd"]) == (f"| small-akd | {CPU} | 416M | 150.0 (as small) | 1.25 | 30.0% | "
                                             "75.0% | 42.9% |")
    assert _size_speed(GridV3(GridV3Config(out_dir=str(tmp_path / "none")), CPU), scores) == []


def test_a_no_states_the_budget_a_linear_extrapolation_gives_a_yes_labelled_as_such():
    from study.grid_v3.report import _budget_text, budget_for_a_yes, fkl_by_half

    found = budget_for_a_yes({"diff": 0.01, "detectable_diff": 0.025}, 2_000_000)
    assert found == {"tokens_seen": 2_000_000, "tokens_needed": 5_000_000, "times": 2.5}
    text = _budget_text(found)
    assert "extrapolated linearly from 2.00M training tokens" in text and "~5.0M tokens (2.5x)" in text
    assert "lower bound" in text
    assert budget_for_a_yes({"diff": -0.01, "detectable_diff": 0.025}, 2_000_000)["tokens_needed"] is None
    assert "no gain at 2.00M training tokens" in _budget_text(budget_for_a_yes({"diff": 0.0, "detectable_diff": 0.02},
                                                                               2_000_000))
    assert budget_for_a_yes({"diff": 0.01, "detectable_diff": 0.025}, None) is None
    curve = [{"tokens_seen": t, "fkl": f} for t, f in ((0, 0.5), (100, 0.3), (210, 0.25), (300, 0.22), (400, 0.21))]
    first, second = fkl_by_half(curve)
    assert first == pytest.approx(0.25) and second == pytest.approx(0.04)  # the point at 210 splits 400 tokens
    assert fkl_by_half(curve[:2]) is None


def test_a_no_over_the_arms_names_the_extrapolated_budget_of_the_largest_gain(tmp_path):
    from study.grid_v3.report import Scores, _beats_original

    grid = GridV3(GridV3Config(out_dir=str(tmp_path)), CPU)
    run = grid.run_dir("akd")
    run.mkdir(parents=True)
    metrics = [{"split": "train", "step": s, "tokens": 1000} for s in range(1, 301)]
    metrics += [{"split": "eval", "step": 0, "eval_fkl": 0.2}, {"split": "eval", "step": 300, "eval_fkl": 0.1}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    tasks = 300
    student = {"mbpp": {f"Mbpp/{i}": float(i % 2 == 0) for i in range(tasks)}}
    # 15 tasks gained, 10 lost: +1.7 pts, far from significant
    akd = {"mbpp": {f"Mbpp/{i}": float((i % 2 == 0 and i % 30 != 0) or i % 20 == 1) for i in range(tasks)}}
    found = _beats_original(grid, Scores({CPU: {"student": student, "akd": akd}}, {}), ["akd"])
    [row] = found["comparisons"]
    assert found["answer"].startswith("no, of 1 arm(s) scored") and row["p_value"] >= 0.05
    budget = row["budget_for_a_yes"]
    assert budget["tokens_seen"] == 300_000 and budget["tokens_needed"] > 300_000
    assert f"a yes would need ~{budget['tokens_needed'] / 1e6:.1f}M tokens" in found["answer"]


def test_the_recovery_answer_states_the_share_of_the_pruning_cost_won_back_per_million_tokens(tmp_path):
    from study.grid_v3.report import Scores, _pruned_recovery

    config = GridV3Config(out_dir=str(tmp_path), small_losses="akd")
    grid = GridV3(config, CPU)
    run = grid.run_dir("small-akd")
    run.mkdir(parents=True)
    metrics = [{"split": "train", "step": s, "tokens": 1000} for s in range(1, 501)]
    metrics += [{"split": "eval", "step": s, "eval_fkl": f} for s, f in ((0, 0.4), (250, 0.3), (500, 0.25))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    tasks = 400

    def rates(passing) -> dict:
        return {"mbpp": {f"Mbpp/{i}": float(passing(i)) for i in range(tasks)}}

    scores = Scores({CPU: {"student": rates(lambda i: i % 2 == 0),  # 50%
                           "small": rates(lambda i: i % 10 == 0),  # 10%: pruning cost 40 pts
                           "small-akd": rates(lambda i: i % 10 == 0 or i % 10 == 2)}}, {})  # 20%: +10 pts
    found = _pruned_recovery(grid, scores, config, [])
    [row] = found["rows"]
    assert found["pruning_cost"]["diff"] == pytest.approx(0.4) and row["recovered_share"] == pytest.approx(0.25)
    assert row["tokens_seen"] == 500_000
    assert "+10.0 pts pass@1 over the pruned student after 0.50M tokens, 25% of the 40.0 pts pruning cost it" \
        in found["answer"] and "50% per million tokens" in found["answer"]
    no_gap = Scores({CPU: {"student": rates(lambda i: i % 10 == 0), "small": rates(lambda i: i % 10 == 0),
                           "small-akd": rates(lambda i: i % 10 == 0 or i % 10 == 2)}}, {})
    assert _pruned_recovery(grid, no_gap, config, [])["rows"][0]["recovered_share"] is None
