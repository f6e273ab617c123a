"""What a cache was made from: two runs may fill one cache only if these agree."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cache_schema import tokenizer_fingerprint
from inference import compute_dtype

from .config import TeacherCacheConfig, TeacherConfigError
from .settings import EngineSettings, SamplingSettings


def model_revision(model: str, revision: str | None) -> str | None:
    """The given revision, or for a local folder a hash of its config and weight-file sizes
    (so a different model saved at the same path does not pass as the same teacher)."""
    path = Path(model)
    if revision is not None or not path.is_dir():
        return revision
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return "local-sha256:" + digest.hexdigest()[:16]


def engine_identity(model: str, engine: EngineSettings) -> dict:
    """The model that answers, as a cache or a responses folder records it."""
    return {"model": model, "revision": model_revision(model, engine.revision),
            "backend": engine.backend, "dtype": compute_dtype(engine.backend, engine.dtype)}


def sampling_identity(sampling: SamplingSettings) -> dict:
    return {"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
            "n": sampling.n, "max_new_tokens": sampling.max_new_tokens}


def load_student_tokenizer(name: str | None, teacher_tokenizer):
    """The student's tokenizer, refused unless it maps text to the teacher's ids; None: the
    teacher's own."""
    if name is None:
        return teacher_tokenizer
    from transformers import AutoTokenizer

    student = AutoTokenizer.from_pretrained(name)
    if tokenizer_fingerprint(student) != tokenizer_fingerprint(teacher_tokenizer):
        raise TeacherConfigError(
            f"--student-tokenizer {name}: its token-to-id map differs from the teacher's; a cache "
            "of token ids can only train a student that shares the teacher's tokenizer")
    return student


def cache_identity(config: TeacherCacheConfig, tokenizer, teacher_template, student_template,
                   dataset_identity: dict, responses: dict | None = None) -> dict:
    """`responses`: where score mode's responses come from; None: the teacher generates them
    (that identity has no "responses" key, so caches made before score mode still resume)."""
    identity = {
        "teacher": engine_identity(config.model, config.engine),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "student_tokenizer": config.student_tokenizer,
        "templates": {"teacher": teacher_template.to_dict(), "student": student_template.to_dict()},
        "sampling": sampling_identity(config.sampling),
        "dataset": dataset_identity,
    }
    if responses is not None:
        identity["sampling"] = None  # the teacher samples nothing: it scores `responses`
        identity["responses"] = responses
    return json.loads(json.dumps(identity))  # plain JSON types, as the manifest stores them
