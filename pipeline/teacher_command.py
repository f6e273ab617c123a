"""`akd teacher-cache`: stage one from the command line, options from TeacherCacheConfig."""
from __future__ import annotations

import click

from common.settings import option_flag
from inference.allocator import describe as describe_allocator
from model_tools.gguf_models import resolve_model
from pipeline.dataclass_options import dataclass_options
from pipeline.errors import akd_command
from pipeline.shared_options import MODELS_DIR_OPTION
from pipeline.settings_file_options import settings_file_options
from stages.teacher import TeacherCacheConfig


@akd_command("teacher-cache")
@settings_file_options(TeacherCacheConfig)
@dataclass_options(TeacherCacheConfig)
@MODELS_DIR_OPTION
def teacher_cache_command(models_dir, **options):
    """Cache the teacher's top-k log-probs for every answer it writes (stage one).

    Rerunning the same command on the same --out resumes where it stopped.
    """
    from stages.teacher import build_teacher_cache

    click.echo(describe_allocator(), err=True)
    options["model"] = resolve_model(options["model"], models_dir, option_flag(TeacherCacheConfig, "model"))
    if options["student_tokenizer"]:
        options["student_tokenizer"] = resolve_model(options["student_tokenizer"], models_dir,
                                                     option_flag(TeacherCacheConfig, "student_tokenizer"),
                                                     weights=False)
    build_teacher_cache(TeacherCacheConfig.from_options(options))
