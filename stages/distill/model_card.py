"""The distilled student's model card (final/README.md): what it started from, what taught it,
on which data, with which loss, for how long, and how its fidelity to the teacher moved.

Written when the run ends, from the run's own record (config.json), metrics and summary, so it
states only what was measured; `akd eval` of the folder adds its pass@1 to the `evaluation`
section.
"""
from __future__ import annotations

from pathlib import Path

from common.model_card import write_card

LOSS_NAMES = {"akd": "AKD (adaptive KL: forward KL on the teacher's head, reverse KL on its tail)",
              "fkl": "forward KL (KD)", "rkl": "reverse KL (RKD)", "ce": "cross-entropy on the teacher's answers",
              "jsd": "Jensen-Shannon divergence", "skl": "skew KL", "srkl": "skew reverse KL",
              "tvd": "total variation distance"}
FIDELITY = (("eval_fkl", "forward KL to the teacher"), ("eval_rkl", "reverse KL to the teacher"),
            ("eval_top1_agreement", "top-1 agreement with the teacher"), ("eval_nll", "NLL of the teacher's tokens"))


def write_student_card(final_dir: Path | str, record: dict, metrics: list[dict], summary: dict) -> Path:
    options, caches = record["options"], record["mix"]["caches"]
    student = record["student"]["name"]
    teachers = _unique(_teacher(c) for c in caches)
    datasets = _unique(c.get("dataset", {}).get("source") for c in caches if c.get("dataset"))
    front = {"base_model": _model_id(student), "library_name": "transformers", "pipeline_tag": "text-generation",
             "tags": ["distillation", "code", "akd"], "datasets": datasets, "teacher": teachers}
    tokens = sum(r.get("tokens", 0) for r in metrics if r.get("split") == "train")
    loss = options["loss"]["kind"]
    training = [
        f"Distilled with akd (an offline top-k teacher cache) from {', '.join(f'`{t}`' for t in teachers)} into `{_model_id(student)}`.",
        "",
        f"- loss: {LOSS_NAMES.get(loss, loss)} (`--loss {loss}`)",
        f"- {summary['steps']} optimizer steps at lr {options['lr']:g} ({record.get('precision', 'float32')}), "
        f"{tokens:,} response tokens seen",
        "",
        "| cache | teacher | teacher template | student template | k | examples |",
        "|---|---|---|---|---|---|",
        *(f"| {c.get('label')} | {_model_id(_teacher(c))} | {_template(c, 'teacher')} | {_template(c, 'student')} | "
          f"{c.get('k', record['mix'].get('k'))} | {c.get('rows', '')} |" for c in caches),
    ]
    return write_card(final_dir, front, f"{Path(student.rstrip('/')).name}, distilled ({loss})",
                      {"training": "\n".join(training), "fidelity": _fidelity(metrics),
                       "evaluation": "## Evaluation\n\nNot evaluated yet: `akd eval --model <this folder>` adds "
                                     "its HumanEval and MBPP pass@1 here."})


def _fidelity(metrics: list[dict]) -> str:
    evals = [r for r in metrics if r.get("split") == "eval"]
    if not evals:
        return "## Held-out fidelity\n\nNo held-out slice was evaluated (`--eval-fraction 0`)."
    first, last = evals[0], evals[-1]
    rows = [f"| {label} | {first[key]:.4f} | {last[key]:.4f} |" for key, label in FIDELITY
            if key in first and key in last]
    return "\n".join([f"## Held-out fidelity (step {first['step']} -> {last['step']}, "
                      f"{last.get('eval_tokens', 0):,} held-out teacher tokens)", "",
                      "| metric | before | after |", "|---|---|---|", *rows])


def _teacher(cache: dict) -> str:
    teacher = cache.get("teacher") or {}
    return teacher.get("model") if isinstance(teacher, dict) else str(teacher)


def _template(cache: dict, role: str) -> str:
    template = (cache.get("templates") or {}).get(role)
    return template.get("name") if isinstance(template, dict) else str(template)


def _model_id(spec: str) -> str:
    """A Hub id as given; a local folder by its name (a card must not carry this machine's paths)."""
    return Path(spec.rstrip("/")).name if Path(spec).exists() else spec


def _unique(values) -> list[str]:
    out = []
    for value in values:
        value = _model_id(value) if value else value
        if value and value not in out:
            out.append(value)
    return out
