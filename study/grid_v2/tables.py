"""report.json as Markdown: the five answers first, then one section per thing they rest on."""
from __future__ import annotations

from study.grid_v2.cost import estimate_markdown
from study.grid_v2.budget import Budget, RunBudget
from study.grid_v2.headline import markdown as answers_markdown

STATS_NOTE = ("Differences are paired over the same tasks: diff = pass@1(A) - pass@1(B) in points, its "
              "95% paired-bootstrap interval (10,000 resamples over tasks), and the exact McNemar p-value "
              "on the tasks where exactly one of the two passes; pooled = every task both were scored on "
              "(HumanEval 164, MBPP test 500, MBPP train 374 for a model that never trained on it). "
              "p >= 0.05 means the data cannot tell the two apart. Detectable: the true pooled difference "
              "McNemar's test would find 4 times in 5 (80% power at alpha 0.05, Connor's approximation at "
              "the pair's observed share of discordant tasks); a smaller true effect can hide behind p >= 0.05.")
LOSS_NOTE = ("Accuracy loss = (pass@1(teacher) - pass@1(model)) / pass@1(teacher), averaged over HumanEval "
             "and MBPP test (docs/design.md). Tokens/s: generated tokens per second of the test-split evaluation "
             "(the grid's engine, vLLM by default, same settings for every model), confounded by answer length "
             "(a model whose answers end sooner leaves its batch emptier); the size and speed section has the "
             "fixed-length figure.")
SPEED_NOTE = ("Decode tokens/s at a fixed length (`akd speed`): the first HumanEval prompts, asked as the "
              "evaluation asks them, each given exactly the same number of new tokens (greedy, eos ignored) in one "
              "batched generate after a warm-up, same engine settings for every model. The smaller students "
              "trained from the pruned one share its architecture and dtype: its one measurement serves them all. "
              "The evaluation's tokens/s is kept beside it, but it is confounded by answer length: shorter answers "
              "leave the batch emptier at the end, so a smaller model can look slower.")
BENCH_COLUMNS = (("humaneval", "HumanEval"), ("mbpp", "MBPP test"), ("mbpp_train", "MBPP train"))


def markdown_report(report: dict, plots: dict[str, str]) -> str:
    progress = report["progress"]
    lines = ["# AKD experiment, grid v2: does distillation make the student better?", ""]
    lines += answers_markdown(report.get("answers", []))
    if progress["pending"]:
        lines += [f"**Partial report: {progress['done']} of {progress['steps']} steps done.** "
                  f"Not yet done: {', '.join(progress['pending'])}.", ""]
    lines += _plan(report.get("plan"), report["config"])
    lines += _choices(report.get("choices", {}))
    lines += _table(report.get("table", []), plots)
    lines += _significance(report.get("significance", []))
    lines += _speed(report.get("speed", []), plots)
    lines += _recovery(report.get("recovery", []), plots)
    lines += _fidelity(report.get("fidelity", []))
    for key, title in (("training_curves", "training curves"), ("head_weight", "AKD head weight")):
        if key in plots:
            lines += [f"![{title}]({plots[key]})", ""]
    lines += _settings(report["config"], report.get("run_settings", []))
    lines += _costs(report.get("costs", []))
    lines += _commands(report.get("commands", []), report.get("software", {}), report.get("samples"))
    return "\n".join(lines) + "\n"


def _plan(plan: dict | None, config: dict) -> list[str]:
    if not plan:
        return []
    b = plan["budget"]
    budget = Budget(b["train_examples"], b["micro_batches"], b["grad_accum"],
                    **{k: RunBudget(**b[k]) for k in ("full", "sweep", "small")})
    lines = ["## Plan and expected cost", "",
             f"Teacher `{config['teacher']}`, student `{config['student']}` and its width-pruned copy "
             f"({100 * config['small_mlp_keep']:.0f}% of every MLP's neurons kept), {config['n_examples']} "
             f"CodeAlpaca examples at k = {config['k']}, every run of one student size on the same examples, "
             f"steps, schedule and seed {config['seed']}.", ""]
    return lines + estimate_markdown(plan["estimate"], budget, plan["budget_measured"])


def _choices(choices: dict) -> list[str]:
    lines = []
    if template := choices.get("template"):
        lines += [f"**Teacher template** (teacher pass@1 on MBPP `{template['split']}`: "
                  + ", ".join(f"{t} {_pct(v)}" for t, v in template["pass@1"].items()) + f"): {template['reason']}."]
        if template.get("best_enhanced_vs_plain"):
            lines[-1] += f" Best enhanced vs plain: {_diff(template['best_enhanced_vs_plain'])}."
    if lr := choices.get("lr"):
        rows = ", ".join(f"{k}: {_pct(v)}, FKL {_num(lr['heldout_fkl'].get(k))}" for k, v in lr["pass@1"].items())
        lines += [f"**AKD's lr** (sweep, {lr['split']} pass@1 and final held-out FKL: {rows}): {lr['reason']}."]
        if "student_pass@1" in lr:
            lines[-1] += (f" The original student scores {_pct(lr['student_pass@1'])} there; chosen lr vs "
                          f"student: {_diff(lr['chosen_vs_student'])}.")
    if answers := choices.get("mbpp_answers"):
        left = ", ".join(f"{n} {k}" for k, n in answers.get("left_out", {}).items()) or "none"
        lines += [f"**MBPP-train answers**: {answers['kept']} of the teacher's {answers['n_tasks']} answers pass "
                  f"their task's asserts and were kept (left out: {left})."]
    if base := choices.get("mbpp_base"):
        lines += [f"**The MBPP-train arm's base cache**: {base['reason']}."]
    return (["## Choices (never made on test tasks)", "", *[line + "\n" for line in lines]] if lines else [])


def _table(rows: list[dict], plots: dict) -> list[str]:
    if not rows:
        return []
    lines = ["## pass@1 (greedy) and accuracy loss", "",
             "| model | parameters | " + " | ".join(t for _, t in BENCH_COLUMNS)
             + " | pooled (tasks) | acc. loss mean | tokens/s |", "|---|" + "---|" * (len(BENCH_COLUMNS) + 4)]
    for r in rows:
        p = r["pass@1"]
        lines.append(f"| {r['name']} | {_millions(r['parameters'])} | "
                     + " | ".join(_pct(p.get(k)) for k, _ in BENCH_COLUMNS)
                     + f" | {_pct(p['pooled'])} ({p['tasks']}) | {_pct(r['accuracy_loss']['mean'])} | "
                     f"{_num(r['tokens_per_s'], 0)} |")
    lines += ["", LOSS_NOTE, ""]
    if "pass@1" in plots:
        lines += [f"![pass@1 and accuracy loss]({plots['pass@1']})", ""]
    return lines


def _significance(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Are the differences real?", "", STATS_NOTE, "",
             "| A | B | " + " | ".join(t for _, t in BENCH_COLUMNS) + " | pooled | detectable |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['a']} | {row['b']} | {row['error']} | | | | |")
            continue
        tests = row["tests"]
        lines.append(f"| {row['a']} | {row['b']} | " + " | ".join(
            _diff(tests[k]) if k in tests else "" for k in ("humaneval", "mbpp", "mbpp_train", "pooled"))
            + f" | {_detectable(tests.get('pooled', {}))} |")
    return lines + [""]


def _detectable(test: dict) -> str:
    d = test.get("detectable_diff")
    return "-" if d is None else f"±{100 * d:.1f} pts"


def _speed(rows: list[dict], plots: dict) -> list[str]:
    if not rows:
        return []
    student = next((r for r in rows if r["model"] == "student"), None)
    lines = ["## Size, accuracy and speed", "", SPEED_NOTE, "",
             "| model | parameters | pass@1 (HumanEval + MBPP test) | decode tokens/s, fixed length | "
             "speed vs student | evaluation tokens/s (confounded by answer length) | speed vs student |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        fixed = _num(r.get("fixed_tokens_per_s"), 0) if r.get("fixed_tokens_per_s") else "not measured"
        if r.get("fixed_tokens_per_s") and r.get("speed_from") not in (None, r["model"]):
            fixed += f" ({r['speed_from']}'s)"
        lines.append(f"| {r['model']} | {_millions(r['parameters'])} | {_pct(r['pass@1'])} | {fixed} | "
                     f"{_ratio(r, student, 'fixed_tokens_per_s')} | {_num(r.get('eval_tokens_per_s'), 0)} | "
                     f"{_ratio(r, student, 'eval_tokens_per_s')} |")
    lengths = sorted({r["fixed_length"] for r in rows if r.get("fixed_length")})
    if lengths:
        lines += ["", f"Fixed length: {', '.join(lengths)}."]
    machines = sorted({r["speed_machine"] for r in rows if r.get("fixed_tokens_per_s") and r.get("speed_machine")})
    if len(machines) == 1:
        lines += ["", f"Measured on {machines[0]}."]
    elif machines:
        lines += ["", f"**Measured on {len(machines)} different machines ({'; '.join(machines)}): these "
                      "fixed-length speeds do not compare; rerun the speed steps on one machine.**"]
    if any(r.get("speed_basis") == "evaluation" for r in rows):
        lines += ["", "Where the fixed-length measurement has not run yet, the headline and the plot fall back "
                      "to the evaluation's tokens/s (labelled)."]
    lines += [""]
    if "speed" in plots:
        lines += [f"![parameters, pass@1 and tokens/s]({plots['speed']})", ""]
    return lines


def _ratio(row: dict, student: dict | None, key: str) -> str:
    if not student or not row.get(key) or not student.get(key):
        return "n/a"
    return f"{row[key] / student[key]:.2f}x"


def _recovery(rows: list[dict], plots: dict) -> list[str]:
    if not rows:
        return []
    lines = ["## The smaller student's recovery", "",
             "Held-out FKL at every check (training tokens seen), and pass@1 before training, at the midpoint "
             "checkpoint and at the end, on the midpoint's benchmarks.", "",
             "| run | held-out FKL (tokens seen) | pass@1 (step) |", "|---|---|---|"]
    for row in rows:
        fkl = ", ".join(f"{p['fkl']:.3f} ({p['tokens_seen']:,})" for p in row["curve"])
        passes = ", ".join(f"{_pct(p['pass@1'])} ({p['step']})" for p in row["pass@1"])
        lines.append(f"| {row['run']} | {fkl} | {passes} |")
    lines += [""]
    if "recovery" in plots:
        lines += [f"![recovery curves]({plots['recovery']})", ""]
    return lines


def _fidelity(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Token-level fidelity on the held-out slice of each run's cache(s)", "",
             "Before = the student the run started from, after = the trained one. Off-policy runs share one "
             "held-out slice (the teacher's answers); an on-policy or mixed run's slice holds the student's "
             "own answers, so compare its figures within the run only.", "",
             "| run | tokens | FKL | RKL | top-1 agreement | NLL |", "|---|---|---|---|---|---|"]
    for row in rows:
        b, a = row["before"], row["after"]
        lines.append(f"| {row['run']} | {row['tokens']} | "
                     + " | ".join(f"{_num(b[k])} -> {_num(a[k])}" for k in ("fkl", "rkl", "top1_agreement", "nll"))
                     + " |")
    return lines + [""]


RUN_COLUMNS = (("loss", "loss"), ("lr", "lr"), ("max_steps", "steps"), ("max_batch_tokens", "batch tokens"),
               ("k", "k"), ("teacher_template", "teacher template"), ("student_template", "student template"),
               ("seed", "seed"))


def _settings(config: dict, runs: list[dict]) -> list[str]:
    """The training settings as each run recorded them, flagged where the grid asked otherwise."""
    lines = ["## Settings each run recorded", ""]
    if not runs:
        return lines + ["No training run has recorded its settings yet.", ""]
    lines += ["Each training run's settings as it recorded them (its config.json: options, and the "
              "k and templates of the cache it read):", "",
              "| run | " + " | ".join(title for _, title in RUN_COLUMNS) + " |",
              "|---|" + "---|" * len(RUN_COLUMNS)]
    for run in runs:
        cells = [_recorded(run, key) for key, _ in RUN_COLUMNS]
        lines.append(f"| {run['run']}{' (!)' if run['differs'] else ''} | " + " | ".join(cells) + " |")
    differing = [run["run"] for run in runs if run["differs"]]
    lines += ["", f"**(!) {len(differing)} run(s) recorded settings other than the grid asked for** "
              f"({', '.join(differing)}): the asked value is in brackets." if differing
              else "Every run recorded the settings the grid asked for.", ""]
    return lines


def _recorded(run: dict, key: str) -> str:
    value = "-" if run.get(key) is None else f"{run[key]:g}" if isinstance(run[key], float) else str(run[key])
    return f"**{value}** (asked {run['differs'][key]})" if key in run["differs"] else value


def _costs(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## What each step cost", "",
             "Wall time of the whole command; peak memory = RSS summed over its process tree, "
             "sampled each second (training: the trainer's own peak in brackets).", "",
             "| step | wall | peak memory | machine | notes |", "|---|---|---|---|---|"]
    machines = list(dict.fromkeys(r["machine"] for r in rows if r.get("machine")))  # first seen first
    for row in rows:
        notes = ""
        if "train_time_s" in row:
            notes = (f"{row['steps']} steps, {row['train_time_s'] / max(row['steps'], 1):.1f} s/step, "
                     f"loader wait {100 * row['loader_wait_share']:.1f}%")
        elif row.get("response_tokens"):
            notes = f"{row['rows']} examples, {row['response_tokens']} teacher tokens"
        if row.get("attempts", 1) > 1:
            notes += f"{'; ' if notes else ''}attempt {row['attempts']}; wall of the last attempt only"
        peak = f"{row['peak_rss_gib']:.1f} GiB" if row.get("peak_rss_gib") else "-"
        if "trainer_peak_gib" in row:
            peak += f" ({row['trainer_peak_gib']:.1f})"
        machine = f"M{machines.index(row['machine']) + 1}" if row.get("machine") else "-"
        lines.append(f"| {row['step']} | {_duration(row['wall_s'])} | {peak} | {machine} | {notes} |")
    total = sum(r["wall_s"] or 0 for r in rows)
    lines += ["", f"Total wall time of the steps done: {total / 3600:.1f} h."]
    if machines:
        lines += ["", "Machines (a grid outlives its machine; bf16 is emulated where neither AVX-512 BF16 nor "
                      "AMX is listed):", "", *[f"- M{i}: {m}" for i, m in enumerate(machines, 1)]]
    return lines + [""]


def _commands(commands: list[dict], software: dict, samples: dict | None) -> list[str]:
    lines = ["## How this was made", ""]
    if software:
        lines += ["Software: " + ", ".join(f"{k} {v}" for k, v in software.items() if v) + ".", ""]
    if samples:
        lines += [f"Per-task samples of every evaluated model ({len(samples)} folders) are in `samples/<model>/` "
                  "(`akd eval-export`: task id, the extracted program, passed, reason), re-scorable with "
                  "another harness (stages/evaluate/export.py says how).", ""]
    lines += ["Each step is one `akd` command (run by `akd experiment run`; `make experiment`):", "", "```"]
    lines += [f"akd {' '.join(c['command'])}" for c in commands if c["command"]]
    return lines + ["```", ""]


def _diff(test: dict) -> str:
    return (f"{100 * test['diff']:+.1f} pts [{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}], "
            f"p={test['mcnemar_p_value']:.2g}")


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _millions(value) -> str:
    return "n/a" if value is None else f"{value / 1e6:.0f}M" if value >= 1e7 else f"{value / 1e6:.2f}M"


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
