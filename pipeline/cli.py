"""`akd`: the command line of every stage.

The only module that knows every stage: each command turns its options into a stage's
config and calls it. Stages and the cache contract stay importable without click.
"""
from __future__ import annotations

from pipeline.cache_commands import cache_group
from pipeline.distill_command import distill_command
from pipeline.errors import akd_group
from pipeline.eval_command import eval_command, report_command
from pipeline.eval_data_commands import data_group, eval_export_command
from pipeline.experiment_command import experiment_group
from pipeline.model_commands import models_command, prune_command
from pipeline.onpolicy_command import onpolicy_group
from pipeline.rollout_command import rollout_command
from pipeline.speed_command import speed_command
from pipeline.teacher_command import teacher_cache_command


@akd_group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main():
    """akd: distil a big code LLM into a small one through an offline top-k teacher cache."""


main.add_command(models_command)
main.add_command(cache_group)
main.add_command(teacher_cache_command)
main.add_command(rollout_command)
main.add_command(distill_command)
main.add_command(eval_command)
main.add_command(report_command)
main.add_command(speed_command)
main.add_command(eval_export_command)
main.add_command(data_group)
main.add_command(prune_command)
main.add_command(experiment_group)
main.add_command(onpolicy_group)

if __name__ == "__main__":
    main()
