"""Stage one of akd: the teacher answers the training instructions and its top-k
log-probabilities go to the cache (cache_schema). Imports no other stage."""
from .build import build_teacher_cache, example_id, finalize_teacher_cache
from .config import TeacherCacheConfig, TeacherConfigError

__all__ = ["TeacherCacheConfig", "TeacherConfigError", "build_teacher_cache", "example_id",
           "finalize_teacher_cache"]
