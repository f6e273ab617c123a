"""Grid v3's plan (study/grid_v3/): the order that lets any prefix answer something, one schedule
per student size, sampled evaluations that decide, and a tiny grid run end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_folders import give_passing_mbpp_train_answers
from common.machine import cpu_class, machine_facts
from study.engine.choice_file import write_choice
from study.engine.settings import ExperimentError
from study.engine.stats import compare_pooled, compare_rates
from study.grid_v3.config import GridV3Config, load_config
from study.grid_v3.plan import build_plan
from teacher_data import write_rows

REPO = Path(__file__).resolve().parents[1]


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


CPU = "avx512_bf16"


def test_target_near_data_comes_first_then_the_pruned_student_and_every_need_before(tmp_path):
    steps = build_plan(GridV3Config(out_dir=str(tmp_path)), CPU)
    names = [s.name for s in steps]
    for i, step in enumerate(steps):
        assert all(need in names[:i] for need in step.needs), step.name
    trains = [n for n in names if n.startswith("train-")]
    assert trains[:3] == ["train-akd-mix", "train-akd-mbpp", "train-akd"]  # question 1 first
    assert trains[3:5] == ["train-small-from-parent", "train-small-from-teacher"]  # the teacher choice first
    assert trains[5:9] == ["train-small-ce", "train-small-fkl", "train-small-rkl", "train-small-akd"]
    assert trains[9:] == ["train-ce", "train-fkl", "train-rkl", "train-jsd"]
    assert names.index("choose-small-teacher") < names.index("train-small-ce")
    assert names.index("cache-mbpp-references") < names.index("train-akd-mix")  # every run's probe
    assert names.index("eval-akd-mix-test-sampled@avx512_bf16") < names.index("prune-small")
    assert names[-1].endswith("-test-greedy@avx512_bf16") and "eval-teacher-test-sampled@avx512_bf16" in names
    power = names.index("eval-akd-mix-test-sampled@avx512_bf16")  # greedy vs sampled on the first pair, early
    assert names[power + 1:power + 3] == ["eval-student-test-greedy@avx512_bf16", "eval-akd-mix-test-greedy@avx512_bf16"]
    greedy = [n.removesuffix("-test-greedy@avx512_bf16") for n in names if n.endswith("-test-greedy@avx512_bf16")]
    sampled = [n.removesuffix("-test-sampled@avx512_bf16") for n in names if n.endswith("-test-sampled@avx512_bf16")]
    assert sorted(greedy) == sorted(sampled)  # every model's headline once, none moved twice
    assert not [n for n in names if n.startswith(("eval-akd-mix-train", "eval-akd-mbpp-train"))]
    assert "eval-akd-train-sampled@avx512_bf16" in names  # never trained on MBPP train: scored there too
    no_greedy = build_plan(GridV3Config(out_dir=str(tmp_path), greedy_headline=False, full_losses=""), CPU)
    assert not [s for s in no_greedy if "greedy" in s.name and "teacher-train" not in s.name]
    assert not [s for s in no_greedy if s.name in ("train-ce", "train-jsd")]


def test_every_run_of_one_size_gets_the_same_schedule_and_the_mix_its_weights(tmp_path):
    config = GridV3Config(out_dir=str(tmp_path), mbpp_weight=0.3, seed=3, distill_options="--threads 2")
    write_choice(tmp_path / "choices" / "small-teacher.json", {"chosen": "parent"})
    commands = {s.name: s.command() for s in build_plan(config) if s.kind == "train"}

    def schedule(args: list[str]) -> list[str]:
        start = args.index("--max-steps")
        return args[start:]

    full = {n: schedule(a) for n, a in commands.items() if not n.startswith("train-small-")}
    small = {n: schedule(a) for n, a in commands.items() if n.startswith("train-small-") and "-from-" not in n}
    assert len({tuple(a) for a in full.values()}) == 1 and len({tuple(a) for a in small.values()}) == 1
    short = {n: schedule(a) for n, a in commands.items() if "-from-" in n}
    assert len({tuple(a) for a in short.values()}) == 1 and _value(next(iter(short.values())), "--max-steps") == "100"
    assert all(_value(a, "--probe-cache") == str(tmp_path / "caches" / "mbpp-references") for a in commands.values())
    # the pruned student's arms read the chosen teacher's cache; the choice's runs one each
    assert {_value(commands[f"train-small-{loss}"], "--cache") for loss in ("ce", "fkl", "rkl", "akd")} == {
        str(tmp_path / "caches" / "codealpaca-parent")}
    assert _value(commands["train-small-from-teacher"], "--cache") == str(tmp_path / "caches" / "codealpaca")
    assert _value(commands["train-akd"], "--cache") == str(tmp_path / "caches" / "codealpaca")
    one_full, one_small = next(iter(full.values())), next(iter(small.values()))
    assert _value(one_full, "--max-steps") == "300" and _value(one_full, "--lr") == "5e-06"
    assert _value(one_small, "--max-steps") == "600" and _value(one_small, "--lr") == "3e-05"
    assert _value(one_full, "--eval-fraction") == "0.128"
    # a full-size run is checked at its start and end (full_heldout_evals 1), the pruned student's
    # curve 6 times after its start; both resume from 6 checkpoints
    assert _value(one_full, "--eval-every") == "300" and _value(one_full, "--checkpoint-every") == "50"
    assert _value(one_small, "--eval-every") == "100" and _value(one_small, "--checkpoint-every") == "100"
    one_short = next(iter(short.values()))  # the teacher choice compares each run's end: 100 steps, 6 resume points
    assert _value(one_short, "--eval-every") == "100" and _value(one_short, "--checkpoint-every") == "16"
    assert one_full[-2:] == ["--threads", "2"] and _value(one_full, "--seed") == "3"
    mix = commands["train-akd-mix"]
    assert [mix[i + 1] for i, a in enumerate(mix) if a == "--cache-weight"] == ["0.7", "0.3"]
    assert _value(commands["train-small-akd"], "--student").endswith("models/qwen2.5-coder-0.5b-instruct-mlp75")


def test_deciding_evaluations_are_sampled_and_the_headline_greedy(tmp_path):
    steps = {s.name: s for s in build_plan(GridV3Config(out_dir=str(tmp_path), eval_samples=7), CPU)}
    sampled = steps["eval-akd-test-sampled@avx512_bf16"].command()
    assert _value(sampled, "--n-samples") == "7" and _value(sampled, "--temperature") == "0.8"
    assert _value(sampled, "--out") == str(tmp_path / "evals" / CPU / "akd" / "test-sampled")
    assert "--n-samples" not in steps["eval-akd-test-greedy@avx512_bf16"].command()
    assert _value(steps["eval-teacher-train-greedy"].command(), "--split") == "train"
    assert steps["eval-akd-train-sampled@avx512_bf16"].meta["benchmarks"] == ["mbpp"]


def _done_elsewhere(root: Path, steps) -> None:
    """Records and folders of finished evaluations, as a machine of another class leaves them."""
    for step in steps:
        (root / "steps").mkdir(parents=True, exist_ok=True)
        (root / "steps" / f"{step.name}.json").write_text(json.dumps({"name": step.name, "status": "done"}))
        step.output.mkdir(parents=True, exist_ok=True)


def test_a_model_is_evaluated_once_and_an_original_again_where_its_comparisons_are(tmp_path, monkeypatch):
    config = GridV3Config(out_dir=str(tmp_path), greedy_headline=False)
    on_avx512 = {s.name: s for s in build_plan(config, CPU)}
    _done_elsewhere(tmp_path, [on_avx512[f"eval-{m}-test-sampled@{CPU}"] for m in ("student", "akd-mix")])
    here = [s.name for s in build_plan(config, "amx")]
    assert "eval-akd-mix-test-sampled@amx" not in here  # done, on the other class
    assert "eval-akd-mbpp-test-sampled@amx" in here  # not evaluated anywhere yet: here
    assert "eval-student-test-sampled@amx" in here  # so the original it pairs with is evaluated here again
    small_only = [s for s in on_avx512.values() if s.kind == "eval" and s.meta.get("cpu_class")
                  and s.meta["split"] == "test" and not s.meta["model"].startswith("small")]

    from click.testing import CliRunner

    from pipeline.cli import main

    import study.grid_v3.plan as plan

    monkeypatch.setattr(plan, "cpu_class", lambda facts: "amx")  # status run on an AMX machine
    (tmp_path / "experiment.json").write_text(json.dumps({"out_dir": str(tmp_path), "greedy_headline": False}))
    shown = CliRunner().invoke(main, ["experiment", "v3", "status", "--out-dir", str(tmp_path), "--keep-dir", ""])
    assert shown.exit_code == 0, shown.output
    assert "pending  eval-student-test-sampled@amx" in shown.output
    assert shown.output.strip().splitlines()[-1] == (
        "evaluated on another CPU class (this one: amx; pairs form within a class): "
        f"eval-akd-mix-test-sampled@{CPU}, eval-student-test-sampled@{CPU}")

    _done_elsewhere(tmp_path, small_only)  # every test evaluation but the pruned student's and its arms'
    here = [s.name for s in build_plan(config, "amx")]
    assert "eval-small-akd-test-sampled@amx" in here and "eval-small-test-sampled@amx" in here
    assert "eval-student-test-sampled@amx" not in here  # no full-size model left to pair with it here

    every_test = [s for s in on_avx512.values() if s.kind == "eval" and s.meta.get("cpu_class")
                  and s.meta["split"] == "test"]
    _done_elsewhere(tmp_path, every_test)
    here = [s.name for s in build_plan(config, "amx")]
    assert not [n for n in here if "-test-sampled@" in n]  # nothing left to compare with on this class
    assert "eval-student-train-sampled@amx" in here  # the train split's comparisons are still to come


def test_the_report_pairs_evaluations_only_within_one_cpu_class():
    from study.grid_v3.report import Scores

    def rates(*passed):
        return {"humaneval": {f"HumanEval/{i}": float(p) for i, p in enumerate(passed)}}

    scores = Scores({"amx": {"akd": rates(1, 1, 0), "student": rates(1, 0, 0)},
                     "avx512_bf16": {"student": rates(1, 1, 1), "akd-mix": rates(1, 1, 1)}}, {})
    paired = scores.compare("akd", "student")
    assert paired["cpu_class"] == "amx" and paired["diff"] == pytest.approx(1 / 3)
    assert scores.compare("akd-mix", "akd") is None and scores.compare("akd-mix", "student")["cpu_class"] == CPU
    assert scores.unpaired == [{"a": "akd-mix", "b": "akd", "a_on": [CPU], "b_on": ["amx"],
                                "waits_for": "akd-mix evaluated on amx"}]



def test_a_gain_found_before_every_arm_is_scored_says_so_and_what_the_whole_family_would_need(tmp_path):
    from study.grid_v3.plan import GridV3
    from study.grid_v3.report import Scores, _beats_original

    tasks = 200
    student = {"mbpp": {f"Mbpp/{i}": float(i % 3 == 0) for i in range(tasks)}}
    better = {"mbpp": {f"Mbpp/{i}": float(i % 3 == 0 or i % 5 == 0) for i in range(tasks)}}  # +~9 pts
    scores = Scores({CPU: {"student": student, "akd-mix": better}}, {})
    grid = GridV3(GridV3Config(out_dir=str(tmp_path)), CPU)
    found = _beats_original(grid, scores, ["akd-mix", "akd", "ce", "fkl"])
    [row] = found["comparisons"]
    assert found["open"] and found["waiting_for"] == ["akd", "ce", "fkl"]
    assert row["holm_p"] == pytest.approx(row["p_value"])  # one arm scored: nothing to adjust yet
    assert row["holm_p_all_arms_at_worst"] == pytest.approx(min(1.0, 4 * row["p_value"]))
    assert found["answer"].startswith("yes so far (1 of 4 arms scored): akd-mix +")
    assert "over all 4 if none still to come has a smaller p" in found["answer"]
    whole = _beats_original(grid, scores, ["akd-mix"])
    assert whole["answer"].startswith("yes: akd-mix +") and "over all" not in whole["answer"]


def test_the_report_weighs_greedy_against_sampled_on_pairs_scored_both_ways():
    from study.grid_v3.report import Scores, _greedy_or_sampled, _power_row

    def rates(*values):
        return {"humaneval": {f"HumanEval/{i}": v for i, v in enumerate(values)}}

    sampled = {CPU: {"akd": rates(0.8, 0.4, 0.6, 0.2), "student": rates(0.6, 0.4, 0.4, 0.2)}}
    greedy = {CPU: {"akd": rates(1.0, 0.0, 1.0, 0.0), "student": rates(0.0, 1.0, 1.0, 0.0)},
              "amx": {"akd": rates(1.0, 1.0, 1.0, 1.0)}}  # no sampled pair on amx: no row
    rows = _greedy_or_sampled(Scores(sampled, greedy), ["akd", "small-akd"], samples=5)
    assert [(r["a"], r["b"], r["cpu_class"]) for r in rows] == [("akd", "student", CPU)]
    expect = {m: compare_pooled(t[CPU]["akd"], t[CPU]["student"], test=compare_rates)["pooled"]["se"]
              for m, t in (("sampled", sampled), ("greedy", greedy))}
    row = rows[0]
    assert row["se_sampled"] == pytest.approx(expect["sampled"]) and row["se_greedy"] == pytest.approx(expect["greedy"])
    assert row["se_ratio"] > 1 and row["greedy_tasks_worth"] == pytest.approx(row["se_ratio"] ** 2)
    assert "| akd vs student | avx512_bf16 | humaneval |" in _power_row(row)


def test_the_report_projects_the_sampled_pairs_to_other_answer_counts_pooled():
    from study.engine.profiles import load_profile
    from study.engine.stats import best_answer_count, precision_cost, samples_per_task
    from study.grid_v3.cost import estimate
    from study.grid_v3.report import Scores, _answers_per_task, _answers_row

    def answers(*passed):  # each task's 5 answers: the first k pass
        return {"humaneval": {f"HumanEval/{i}": [j < k for j in range(5)] for i, k in enumerate(passed)},
                "mbpp": {f"Mbpp/{i}": [j >= k for j in range(5)] for i, k in enumerate(passed)}}

    def rates(table):
        return {x: {t: sum(v) / len(v) for t, v in tasks.items()} for x, tasks in table.items()}

    verdicts = {CPU: {"akd": answers(4, 2, 3, 1), "student": answers(3, 2, 2, 1)},
                "amx": {"akd": answers(4, 2, 3, 1)}}  # its original not scored there: no row
    sampled = {cpu: {m: rates(t) for m, t in models.items()} for cpu, models in verdicts.items()}
    config = GridV3Config(out_dir="experiments/v3")
    rows = _answers_per_task(Scores(sampled, {}, verdicts), ["akd", "small-akd"], config)
    assert [(r["a"], r["b"], r["cpu_class"], r["n_tasks"]) for r in rows] == [("akd", "student", CPU, 8)]
    pooled = [{f"{x}/{t}": v for x, tasks in verdicts[CPU][m].items() for t, v in tasks.items()} for m in ("akd", "student")]
    assert rows[0]["projected"] == samples_per_task(*pooled)["projected"]  # both benchmarks, one sample
    at_five = next(p for p in rows[0]["projected"] if p["answers"] == 5)
    pooled_rates = [{t: sum(v) / 5 for t, v in side.items()} for side in pooled]
    assert at_five["se"] == pytest.approx(compare_rates(*pooled_rates)["se"])
    assert _answers_row(rows[0]).startswith("| akd vs student | avx512_bf16 | 8 | 5 |")
    assert _answers_per_task(Scores(sampled, {}), ["akd"], config) == []  # no answers to split the noise by
    # the count deciding most per CPU hour: the arm's training and one engine start (the test split only
    # here) counted once, each answer to its 8 tasks on top, from this class's profile
    p = load_profile(CPU)
    train = next(s for s in build_plan(config, CPU) if s.name == "train-akd")
    fixed = estimate(config, [train], p)[0]["minutes"] + p["engine_s"] / 60
    row = rows[0]
    assert row["fixed_minutes"] == round(fixed, 1)
    assert row["minutes_per_answer"] == round(8 * p["eval_s_per_sampled_answer"]["full"] / 60, 2)
    assert row["best_answers"] == best_answer_count(row["task_variance"], row["noise_at_one"], fixed_cost=fixed,
                                                    cost_per_answer=8 * p["eval_s_per_sampled_answer"]["full"] / 60)
    assert f"| {row['best_answers']} answers (training etc." in _answers_row(row)
    # how much more the best count decides per CPU hour than today's: variance x cost, the one measure
    cost = {n: precision_cost(row["task_variance"], row["noise_at_one"], n, fixed_cost=fixed,
                              cost_per_answer=row["minutes_per_answer"]) for n in (5, row["best_answers"])}
    assert row["best_gain"] == pytest.approx(1 - cost[row["best_answers"]] / cost[5], abs=1e-3)
    assert 0 <= row["best_gain"] < 1
    assert _answers_row(row).endswith(f"{100 * row['best_gain']:.0f}% more decided per CPU hour than at 5 |")
    # each model's own count, as its evaluation made it (an arm scored with fewer answers than its original)
    fewer = {CPU: {**verdicts[CPU], "akd": {x: {t: v[:3] for t, v in tasks.items()}
                                            for x, tasks in verdicts[CPU]["akd"].items()}}}
    uneven = _answers_per_task(Scores(sampled, {}, fewer), ["akd"], config)[0]
    assert uneven["samples"] == (3, 5) and _answers_row(uneven).startswith("| akd vs student | avx512_bf16 | 8 | 3 / 5 |")


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ExperimentError, match="--small-losses: unknown loss 'kl'"):
        GridV3Config(small_losses="kl,akd")
    with pytest.raises(ExperimentError, match="--mbpp-weight must be in"):
        GridV3Config(mbpp_weight=1.0)
    with pytest.raises(ExperimentError, match="--eval-samples must be >= 1"):
        GridV3Config(eval_samples=0)


def test_status_read_from_another_folder_is_refused_in_one_line_not_shown_all_pending(tmp_path, monkeypatch):
    """A grid records its folder relative to where it ran (its steps' commands do too)."""
    from click.testing import CliRunner

    from pipeline.cli import main

    clone = tmp_path / "clone"
    root = clone / "experiments" / "v3"
    root.mkdir(parents=True)
    (root / "experiment.json").write_text(json.dumps({"out_dir": "experiments/v3"}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for command in ("status", "report"):
        shown = CliRunner().invoke(main, ["experiment", "v3", command, "--out-dir", str(root), "--keep-dir", ""])
        assert shown.exit_code != 0 and "Traceback" not in shown.output, shown.output
        assert f"{root / 'experiment.json'} records its folder as 'experiments/v3', relative to the folder it " \
               "ran from" in shown.output
        assert not (tmp_path / "elsewhere" / "results").exists()  # no empty report written
    monkeypatch.chdir(clone)  # from the folder it ran in, the absolute path names the same folder
    shown = CliRunner().invoke(main, ["experiment", "v3", "status", "--out-dir", str(root), "--keep-dir", ""])
    assert shown.exit_code == 0 and "pending  cache-codealpaca" in shown.output, shown.output


@pytest.mark.slow
def test_a_tiny_grid_v3_runs_to_sampled_scores_that_compare(tiny_models, tmp_path):
    teacher, student = tiny_models
    data = tmp_path / "data.jsonl"
    write_rows(data)
    out = tmp_path / "grid"
    args = [sys.executable, "-m", "pipeline.cli", "experiment", "v3", "run", "--out-dir", str(out),
            "--keep-dir", str(tmp_path / "kept"), "--teacher", str(teacher), "--student", str(student),
            "--dataset", str(data), "--n-examples", "16", "--k", "8", "--cache-max-new-tokens", "8",
            "--full-steps", "2", "--small-steps", "2", "--teacher-choice-steps", "2", "--small-losses", "fkl,rkl,akd",
            "--full-losses", "",
            "--heldout-evals", "1", "--heldout-examples", "8", "--max-batch-tokens", "1024",
            "--distill-options", "--max-seq-len 1024 --precision float32 --threads 1 --final-dtype float32 --no-plots",
            "--eval-samples", "2", "--eval-limit", "3", "--eval-max-new-tokens", "16", "--no-greedy-headline",
            "--speed-prompts", "2", "--speed-new-tokens", "4", "--backend", "hf"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(args + ["--only", "eval-teacher-train-greedy"], cwd=REPO, env=env, check=True, capture_output=True)
    give_passing_mbpp_train_answers(out / "evals" / "teacher" / "train-greedy")
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {p.stem: json.loads(p.read_text()) for p in (out / "steps").glob("*.json")}
    plan = [s.name for s in build_plan(load_config(out))]  # the settings as recorded
    assert sorted(records) == sorted(plan) and all(r["status"] == "done" for r in records.values())
    assert json.loads((out / "data" / "mbpp-train-verified.meta.json").read_text())["kept"] == 3
    for run in ("akd-mix", "akd-mbpp", "akd", "small-akd", "small-from-parent", "small-from-teacher"):
        assert json.loads((out / "runs" / run / "summary.json").read_text())["steps"] == 2
        last = [r for r in (out / "runs" / run / "metrics.jsonl").read_text().splitlines() if '"eval"' in r][-1]
        assert json.loads(last)["eval_tokens/probe-mbpp-references"] > 0  # every run scores the reference programs
    choice = json.loads((out / "choices" / "small-teacher.json").read_text())
    chosen = {"parent": out / "caches" / "codealpaca-parent", "teacher": out / "caches" / "codealpaca"}[choice["chosen"]]
    trained_on = json.loads((out / "runs" / "small-akd" / "config.json").read_text())["mix"]["caches"]
    assert [c["path"] for c in trained_on] == [str(chosen.resolve())] and choice["reason"]
    assert json.loads((out / "caches" / "codealpaca-parent" / "manifest.json").read_text())["totals"]["rows"] > 0
    here = cpu_class(machine_facts())  # the class every evaluation of this run was made on
    rows = [json.loads(line) for line in (out / "evals" / here / "akd-mix" / "test-sampled" / "mbpp" / "results.jsonl")
            .read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["statuses"]) == 2 for r in rows)  # 2 sampled answers a task

    from study.engine.results import load_pass_rates

    def rates(model: str) -> dict:
        folder = out / "evals" / here / model / "test-sampled"
        return {b: load_pass_rates(folder, b) for b in ("humaneval", "mbpp")}

    pooled = compare_pooled(rates("akd-mix"), rates("student"), test=compare_rates)["pooled"]
    assert pooled["n_tasks"] == 6 and "p_value" in pooled
    status = subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "v3", "status", "--out-dir", str(out),
                             "--keep-dir", ""], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    assert "done     train-small-akd" in status and "done     train-small-rkl" in status
    assert (tmp_path / "kept" / "runs" / "akd-mix" / "metrics.jsonl").exists()  # kept as it finished

    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "experiment", "v3", "report", "--out-dir", str(out),
                    "--keep-dir", "", "--results", str(results)], cwd=REPO, env=env, check=True, capture_output=True)
    report = json.loads((results / "report.json").read_text())
    assert [a["open"] for a in report["answers"]] == [False, False, False, True]  # the full size's front waits
    beats = report["answers"][0]["comparisons"]
    assert {c["a"] for c in beats} == {"akd-mix", "akd-mbpp", "akd", "small-fkl", "small-rkl", "small-akd"}
    assert {c["a"]: c["benchmarks"] for c in beats}["akd"] == ["humaneval", "mbpp", "mbpp_train"]
    assert {c["a"]: c["benchmarks"] for c in beats}["akd-mix"] == ["humaneval", "mbpp"]  # trained on MBPP train
    assert all(0 <= c["holm_p"] <= 1 and c["b"] in ("student", "small") for c in beats)
    recovery = {row["arm"]: row for row in report["answers"][2]["rows"]}["small-akd"]
    assert recovery["tokens_seen"] > 0 and len(recovery["curve"]) >= 2 and len(recovery["probe_curve"]) >= 2
    assert report["answers"][2]["answer"].startswith("its teacher: the ") and report["small_teacher"] == choice
    assert "small-from-parent" not in report["fidelity"]  # the choice's short runs are not arms
    front = report["answers"][3]["sizes"]["small"]
    assert front["fkl_vs_kd"]["n_sequences"] == front["rkl_vs_rkd"]["n_sequences"] >= 2  # the same held-out sequences
    assert front["fkl_vs_kd"]["ci_low"] <= front["fkl_vs_kd"]["diff"] <= front["fkl_vs_kd"]["ci_high"]
    assert {r["b"] for r in front["pass@1"]} == {"small-fkl", "small-rkl"}
    assert {row["model"] for row in report["table"]} >= {"teacher", "student", "akd", "small", "small-akd"}
    assert {row["cpu_class"] for row in report["table"]} == {here} and report["unpaired"] == []
    assert report["samples"][f"{here}/akd-mix/test-sampled"] == ["humaneval.jsonl.gz", "mbpp.jsonl.gz"]
    assert (results / "samples" / here / "small-akd" / "train-sampled" / "samples.json").exists()
    markdown = (results / "report.md").read_text()
    assert markdown.count("- **") == 4 and "| train-akd-mix |" in markdown
    kept = report["mbpp_answers"]
    assert f"pass their own asserts: {kept['kept']} of {kept['n_tasks']}" in markdown
    assert report["figure"] == "recovery.png" and (results / "recovery.png").stat().st_size > 10_000
    assert "](recovery.png)" in markdown
    speed = {row["model"]: row for row in report["speed"]}  # akd speed of teacher, student, pruned student
    assert [m for m in speed if not m.startswith("small-")] == ["teacher", "student", "small"]
    assert speed["small-akd"]["timed_as"] == "small" and speed["student"]["speedup_over_student"] == 1.0
    assert speed["small"]["parameters"] < speed["student"]["parameters"] < speed["teacher"]["parameters"]
    assert json.loads((tmp_path / "kept" / "speed" / here / "small" / "speed.json").read_text())["prompts"] == 2
    claimed = "x the student's decode tokens/s" in report["answers"][2]["answer"]
    assert claimed == bool(speed["student"]["test_pass_at_1"])  # no share of a student that passes nothing
    assert "## Size, accuracy and decode speed" in markdown


def test_the_estimate_costs_every_step_from_the_profile_and_samples_as_many_answers(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main
    from study.engine.profiles import load_profile
    from study.grid_v3.cost import estimate, total_hours

    config = GridV3Config(out_dir=str(tmp_path), eval_samples=5)
    steps, p = build_plan(config, CPU), load_profile("avx512_bf16")
    rows = {r["step"]: r for r in estimate(config, steps, p)}
    assert list(rows) == [s.name for s in steps]
    sampled, greedy = rows[f"eval-akd-test-sampled@{CPU}"], rows[f"eval-akd-test-greedy@{CPU}"]
    assert sampled["minutes"] == round((p["engine_s"] + 664 * 5 * p["eval_s_per_sampled_answer"]["full"]) / 60, 1)
    assert greedy["minutes"] == round((p["engine_s"] + 664 * p["eval_s_per_task"]["full"]) / 60, 1)
    assert "x 0.95 s" in rows["eval-small-akd-test-greedy@avx512_bf16"]["basis"]  # the pruned student's own rate
    full, small = rows["train-akd"], rows["train-small-akd"]
    assert "300 steps x 2 micro-batches" in full["basis"] and "600 steps" in small["basis"]
    assert small["minutes"] > full["minutes"] and total_hours(list(rows.values())) > 10
    printed = CliRunner().invoke(main, ["experiment", "v3", "estimate", "--out-dir", str(tmp_path)])
    assert printed.exit_code == 0 and "total:" in printed.output and "train-small-akd" in printed.output
    # a class that never measured a sampled answer: its greedy figure x the reference's sampled/greedy
    avx2 = load_profile("avx2")
    row = {r["step"]: r for r in estimate(config, steps, avx2)}[f"eval-akd-test-sampled@{CPU}"]
    per_answer = avx2["eval_s_per_task"]["full"] * p["eval_s_per_sampled_answer"]["full"] / p["eval_s_per_task"]["full"]
    assert row["minutes"] == round((avx2["engine_s"] + 664 * 5 * round(per_answer, 3)) / 60, 1)
    assert "avx512_bf16's sampled/greedy" in row["basis"]


def test_the_estimate_of_what_is_left_counts_only_the_steps_not_done_and_shows_what_they_took(tmp_path):
    from study.engine.profiles import load_profile
    from study.grid_v3.cost import estimate, hours_left, total_hours, with_progress

    config = GridV3Config(out_dir=str(tmp_path))
    steps = build_plan(config, CPU)
    done = next(s for s in steps if s.name == "data-mbpp-references")
    meta_file = Path(done.meta["meta_file"])
    meta_file.parent.mkdir(parents=True, exist_ok=True)
    meta_file.write_text(json.dumps({"kept": 374}))
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / f"{done.name}.json").write_text(json.dumps(
        {"name": done.name, "status": "done", "command": [str(a) for a in done.command()], "wall_s": 126.0,
         "machine": {"isa": ["avx2", "avx512f", "avx512_bf16"]}}))
    rows = with_progress(estimate(config, steps, load_profile(CPU)), steps, tmp_path)
    row = next(r for r in rows if r["step"] == done.name)
    assert (row["state"], row["took_minutes"], row["ran_on"]) == ("done", 2.1, CPU)
    assert all(r["state"] == "pending" and r["took_minutes"] is None for r in rows if r is not row)
    assert hours_left(rows) == pytest.approx(total_hours(rows) - row["minutes"] / 60)


def test_the_estimate_of_a_grid_run_with_other_settings_is_refused_in_one_line(tmp_path):
    """Its steps' commands would differ from the records: every step would read as not done."""
    from click.testing import CliRunner

    from pipeline.cli import main

    (tmp_path / "experiment.json").write_text(json.dumps({"out_dir": str(tmp_path), "models_dir": "/elsewhere"}))
    refused = CliRunner().invoke(main, ["experiment", "v3", "estimate", "--out-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "models_dir: the grid in place has '/elsewhere', this command has 'models'" \
        in refused.output and "Traceback" not in refused.output and "delete" not in refused.output
    same = CliRunner().invoke(main, ["experiment", "v3", "estimate", "--out-dir", str(tmp_path),
                                     "--models-dir", "/elsewhere"])
    assert same.exit_code == 0 and "total:" in same.output


def test_a_gain_significant_alone_but_not_after_holm_says_so_with_both_p_values(tmp_path):
    """akd-mix's +2.0 pts had p = 0.018 alone and 0.053 as one of 3 arms scored: the answer must
    name both, not a bare "no" beside a p below 0.05."""
    from study.grid_v3.plan import GridV3
    from study.grid_v3.report import Scores, _beats_original

    tasks = 200
    student = {"mbpp": {f"Mbpp/{i}": float(i % 3 == 0) for i in range(tasks)}}
    better = {"mbpp": {f"Mbpp/{i}": float(i % 3 == 0 or i % 45 == 1) for i in range(tasks)}}  # 5 gained, none lost
    same = {"mbpp": {f"Mbpp/{i}": float(i % 3 == 1) for i in range(tasks)}}
    scores = Scores({CPU: {"student": student, "akd-mix": better, "akd": same, "akd-mbpp": same}}, {})
    grid = GridV3(GridV3Config(out_dir=str(tmp_path)), CPU)
    grid.run_dir("akd-mix").mkdir(parents=True)
    (grid.run_dir("akd-mix") / "metrics.jsonl").write_text(
        "".join(json.dumps(m) + "\n" for m in [{"split": "train", "step": s, "tokens": 1000} for s in range(1, 101)]
                + [{"split": "eval", "step": 0, "eval_fkl": 0.2}, {"split": "eval", "step": 100, "eval_fkl": 0.1}]))
    found = _beats_original(grid, scores, ["akd-mix", "akd", "akd-mbpp", "ce"])
    row = next(c for c in found["comparisons"] if c["a"] == "akd-mix")
    assert row["p_value"] < 0.05 <= row["holm_p"]
    assert found["answer"].startswith("not after correcting for 3 comparisons; the largest gain, akd-mix: +")
    assert f"p = {row['p_value']:.2g}" in found["answer"]
    assert (f"but Holm p = {row['holm_p']:.2g} over the 3 arm(s) scored, {row['holm_p_all_arms_at_worst']:.2g} "
            "over all 4 if none still to come has a smaller p") in found["answer"]
    # a yes over the family asks more than the pair's own detectable difference: p below 0.05 / 4
    family = (2.497705 + 0.841621) * row["se"]  # z at 1 - 0.05 / (2 x 4) and at the power 0.8
    assert f"a yes over all 4 arms needs a true difference of ~{100 * family:.1f} pts" in found["answer"]
    assert row["budget_for_a_yes"]["tokens_seen"] == 100_000
    assert row["budget_for_a_yes"]["times"] == pytest.approx(max(1.0, family / row["diff"]), abs=0.05)
