"""report.json as Markdown: one section per question the experiment asks."""
from __future__ import annotations

from study.accuracy_report import DEFINITIONS, markdown as accuracy_markdown

STATS_NOTE = ("Differences are paired over the same tasks: diff = pass@1(A) - pass@1(B) in "
              "points, its 95% paired-bootstrap interval (10,000 resamples over tasks), and the "
              "exact McNemar p-value on the tasks where exactly one of the two passes. "
              "p >= 0.05 means the data cannot tell the two apart.")


def markdown_report(report: dict, plots: dict[str, str]) -> str:
    progress = report["progress"]
    lines = ["# The AKD experiment at this machine's scale", ""]
    if progress["pending"]:
        lines += [f"**Partial report: {progress['done']} of {progress['steps']} steps done.** "
                  f"Not yet done: {', '.join(progress['pending'])}.", ""]
    lines += _settings(report["config"], report.get("run_settings", []))
    lines += _selection(report.get("selection"))
    lines += _teacher_prompts(report.get("teacher_prompts"))
    if report["table"]:
        table = accuracy_markdown(report["table"]).replace(DEFINITIONS, "").rstrip()
        lines += ["## " + table.removeprefix("# "), "", DEFINITIONS, ""]
        if "pass@1" in plots:
            lines += [f"![pass@1 and accuracy loss]({plots['pass@1']})", ""]
    lines += _significance(report["significance"])
    lines += _fidelity(report["fidelity"])
    lines += _costs(report["costs"])
    for key, title in (("training_curves", "training curves"), ("head_weight", "AKD head weight")):
        if key in plots:
            lines += [f"![{title}]({plots[key]})", ""]
    lines += _commands(report["commands"], report["software"])
    return "\n".join(lines) + "\n"


RUN_COLUMNS = (("loss", "loss"), ("lr", "lr"), ("max_steps", "steps"), ("max_batch_tokens", "batch tokens"),
               ("k", "k"), ("teacher_template", "teacher template"), ("student_template", "student template"),
               ("seed", "seed"))


def _settings(config: dict, runs: list[dict]) -> list[str]:
    """The models and data from the grid; the training settings as each run recorded them."""
    lines = ["## Settings", "",
             f"Teacher `{config['teacher']}`, student `{config['student']}` (and its depth-pruned "
             f"half, every {config['prune_every']}nd layer kept), {config['n_examples']} examples of "
             f"`{config['dataset']}`, evaluation on {config['benchmarks']} (greedy pass@1, "
             f"{config['eval_max_new_tokens']} new tokens"
             + (f", first {config['eval_limit']} tasks only" if config["eval_limit"] else "") + ").", ""]
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


def _selection(selection: dict | None) -> list[str]:
    if not selection:
        return []
    vs = selection["chosen_vs_plain"]
    lines = ["## Step 0: choosing the teacher's enhanced template", "",
             f"Teacher pass@1 on MBPP `{selection['split']}` tasks (ids 1-10 and 511-600, outside the "
             "test split), one run per candidate template:", "",
             "| template | pass@1 |", "|---|---|"]
    for name, score in selection["pass@1"].items():
        mark = " (chosen)" if name == selection["chosen"] else ""
        lines.append(f"| {name}{mark} | {_pct(score)} |")
    lines += ["", f"Chosen: `{selection['chosen']}` (best non-plain candidate); against plain: "
              f"{_diff(vs)}. " + ("It beats plain." if selection["beats_plain"]
                                  else "It does NOT beat plain on these tasks."), ""]
    return lines


def _teacher_prompts(teacher: dict | None) -> list[str]:
    if not teacher:
        return []
    lines = ["## Does the enhanced prompt raise the teacher's own pass@1?", "",
             "| benchmark | plain | enhanced | enhanced - plain |", "|---|---|---|---|"]
    for bench, row in teacher.items():
        lines.append(f"| {bench} | {_pct(row['plain'])} | {_pct(row['enhanced'])} | "
                     f"{_diff(row['enhanced_vs_plain'])} |")
    return lines + [""]


def _significance(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Are the differences real?", "", STATS_NOTE, "",
             "| A | B | HumanEval | MBPP | pooled |", "|---|---|---|---|---|"]
    for row in rows:
        tests = row["tests"]
        lines.append(f"| {row['a']} | {row['b']} | "
                     + " | ".join(_diff(tests[k]) if k in tests else "" for k in ("humaneval", "mbpp", "pooled"))
                     + " |")
    return lines + [""]


def _fidelity(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Token-level fidelity on the held-out slice of each cache", "",
             "Before = the original student (step 0), after = the distilled one. Lower FKL, RKL and "
             "NLL of the teacher's tokens, higher top-1 agreement are closer to the teacher. The "
             "slice is the same examples in both caches, but the plain and enhanced teachers wrote "
             "different answers to them: compare runs within one cache.", "",
             "| run | tokens | FKL | RKL | top-1 agreement | NLL |", "|---|---|---|---|---|---|"]
    for row in rows:
        b, a = row["before"], row["after"]
        lines.append(f"| {row['run']} | {row['tokens']} | "
                     + " | ".join(f"{_num(b[k])} -> {_num(a[k])}" for k in ("fkl", "rkl", "top1_agreement", "nll"))
                     + " |")
    return lines + [""]


def _costs(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Cost of each step", "",
             "Wall time of the whole command; peak memory = RSS summed over its process tree, "
             "sampled each second (training: the trainer's own peak in brackets).", "",
             "| step | wall | peak memory | notes |", "|---|---|---|---|"]
    for row in rows:
        notes = ""
        if "train_time_s" in row:
            notes = (f"{row['steps']} steps, {row['train_time_s'] / max(row['steps'], 1):.2f} s/step, "
                     f"loader wait {100 * row['loader_wait_share']:.1f}%")
        elif row.get("response_tokens"):
            notes = f"{row['rows']} examples, {row['response_tokens']} teacher tokens"
        if row.get("attempts", 1) > 1:
            notes += f"{'; ' if notes else ''}attempt {row['attempts']} (an earlier one was stopped); wall of the last attempt only"
        peak = f"{row['peak_rss_gib']:.1f} GiB" if row.get("peak_rss_gib") else "-"
        if "trainer_peak_gib" in row:
            peak += f" ({row['trainer_peak_gib']:.1f})"
        lines.append(f"| {row['step']} | {_duration(row['wall_s'])} | {peak} | {notes} |")
    return lines + [""]


def _commands(commands: list[dict], software: dict) -> list[str]:
    lines = ["## How this was made", "",
             "Software: " + ", ".join(f"{k} {v}" for k, v in software.items() if v) + ".", "",
             "Each step is one `akd` command (run by `akd experiment run`; `make experiment`):", "", "```"]
    lines += [f"akd {' '.join(c['command'])}" for c in commands if c["command"]]
    return lines + ["```", ""]


def _diff(test: dict) -> str:
    return (f"{100 * test['diff']:+.1f} pts [{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}], "
            f"p={test['mcnemar_p_value']:.2g}")


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
