"""Stage one of akd: the teacher answers the training instructions and its top-k
log-probabilities go to the cache (cache_schema). Imports no other stage."""
from .build import build_teacher_cache, example_id
from .config import TeacherCacheConfig, TeacherConfigError
from .responses_file import ResponsesFile, ResponsesFileError
from .rollout import run_rollout
from .rollout_config import RolloutConfig
from .settings import DatasetSettings, EngineSettings, SamplingSettings, ShardSettings

__all__ = ["DatasetSettings", "EngineSettings", "ResponsesFile", "ResponsesFileError", "RolloutConfig",
           "SamplingSettings", "ShardSettings", "TeacherCacheConfig", "TeacherConfigError",
           "build_teacher_cache", "example_id", "run_rollout"]
