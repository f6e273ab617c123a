"""`akd onpolicy run | status`: rounds of offline on-policy distillation, resumable."""
from __future__ import annotations

import click

from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_group
from pipeline.step_status import echo_step_table, run_plan
from pipeline.settings_file_options import settings_file_options
from study.onpolicy.rounds import OnPolicyConfig, load_config


@akd_group("onpolicy")
def onpolicy_group():
    """Rounds of offline on-policy distillation: the student answers, the teacher scores those
    answers, the student trains on them; the next round starts from the new student."""


@onpolicy_group.command("run")
@settings_file_options(OnPolicyConfig)
@dataclass_options(OnPolicyConfig)
@click.option("--only", default=None, help="Run only the steps whose name contains this.")
def run_command(only, **options):
    """Run every step not done yet; rerun the same command to resume after any stop.

    Each round keeps OUT_DIR/round-R/{rollouts,cache,run}; OUT_DIR/summary.md, summary.json
    and heldout_fkl.png compare the rounds; OUT_DIR/onpolicy.log says what ran.
    """
    from study.onpolicy.run import run_rounds

    run_plan(OnPolicyConfig(**options), run_rounds, only=only)


@onpolicy_group.command("status")
@click.option("--out-dir", default=OnPolicyConfig.out_dir, show_default=True)
def status_command(out_dir):
    """Which steps are done, running, failed or pending, and each round's held-out fidelity."""
    from study.onpolicy.rounds import build_rounds
    from study.onpolicy.summary import rounds_summary, summary_markdown

    config = load_config(out_dir)
    echo_step_table(config.root, build_rounds(config))
    click.echo("\n" + summary_markdown(rounds_summary(config)))
