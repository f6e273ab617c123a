"""A clone of akd has no ../shared beside it: nothing the project runs may read it."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# "../shared", "shared/data", or a path built as parent / "shared" / "data".
SHARED_PATH = re.compile(r"\.\./shared|shared/data|[\"']shared[\"']\s*\)?\s*/\s*[\"']data[\"']")


def _project_files():
    for pattern in ("pipeline/**/*.py", "stages/**/*.py", "cache_schema/**/*.py",
                    "inference/**/*.py", "benchmarks/**/*.py", "tests/**/*.py", "data/*.py"):
        yield from REPO.glob(pattern)
    yield from (REPO / "Makefile", REPO / "pyproject.toml", REPO / "setup.py", REPO / ".ci" / "run")


def test_nothing_the_project_runs_names_the_shared_folder():
    this = Path(__file__).resolve()
    offenders = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
                 for path in _project_files() if path.resolve() != this
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if SHARED_PATH.search(line)]
    assert offenders == []


def test_the_pattern_catches_the_forms_that_were_used():
    assert SHARED_PATH.search('DATASET ?= ../shared/data/code_alpaca_2k.json')
    assert SHARED_PATH.search('Path(__file__).parents[3] / "shared" / "data"')
    assert not SHARED_PATH.search('inference engines shared by the teacher')


def test_the_shipped_data_matches_its_sources_file():
    from stages.evaluate.datasets import CHECKSUMS, DEFAULT_DATA_DIR
    import hashlib
    sources = (REPO / "data" / "SOURCES.md").read_text()
    for name in (*CHECKSUMS, "code_alpaca_2k.json"):
        digest = hashlib.sha256((REPO / "data" / name).read_bytes()).hexdigest()
        assert f"`{digest}`" in sources, name
    assert DEFAULT_DATA_DIR.resolve() == (REPO / "data").resolve()
