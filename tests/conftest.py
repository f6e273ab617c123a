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


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


@pytest.fixture(autouse=True)
def _the_committed_grid_is_left_alone():
    """The grid's keep folder (ExperimentConfig.keep_dir, relative to the repository) is committed:
    a test that forgot --keep-dir would write into it."""
    from study.grid_v2.config import ExperimentConfig

    kept = REPO_ROOT / ExperimentConfig.keep_dir
    before = _listing(kept)
    yield
    assert _listing(kept) == before, f"a test wrote into {kept}: give it keep_dir under tmp_path"
