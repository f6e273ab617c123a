import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import build_tiny_pair  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(teacher_dir, student_dir) of tiny random Qwen2 models sharing one tokenizer."""
    return build_tiny_pair(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_teacher(tiny_models):
    return tiny_models[0]


@pytest.fixture(scope="session")
def tiny_student(tiny_models):
    return tiny_models[1]


@pytest.fixture(scope="session")
def data_dir():
    """The data akd ships (data/): HumanEval, MBPP, CodeAlpaca-2k."""
    return DATA_DIR
