"""`akd rollout`: a model answers the stage-one prompts into a responses file for score mode."""
from __future__ import annotations

from common.settings import build_config, option_flag
from model_tools.gguf_models import resolve_model
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command
from pipeline.shared_options import MODELS_DIR_OPTION
from pipeline.settings_file_options import settings_file_options
from stages.teacher import RolloutConfig, run_rollout


@akd_command("rollout")
@settings_file_options(RolloutConfig)
@dataclass_options(RolloutConfig)
@MODELS_DIR_OPTION
def rollout_command(models_dir, **options):
    """Have a model answer the training prompts (n samples each) into a responses file.

    The teacher then scores those answers in a separate run:
    `akd teacher-cache --responses-from OUT ...`. Rerunning the same command resumes.
    """
    options["model"] = resolve_model(options["model"], models_dir, option_flag(RolloutConfig, "model"))
    run_rollout(build_config(RolloutConfig, options))
