"""A clone of akd has no ../shared beside it: nothing the project runs may read it."""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# "../shared", "shared/data", or a path built as parent / "shared" / "data".
SHARED_PATH = re.compile(r"\.\./shared|shared/data|[\"']shared[\"']\s*\)?\s*/\s*[\"']data[\"']")


# Records of past runs keep the commands exactly as they ran (the v1 grid read ../shared).
RECORDS = ("results/",)
TEXT_SUFFIXES = {".py", ".toml", ".cfg", ".json", ".md", ".txt", ".sh", ""}


def _project_files():
    """Every file git would commit (tracked, or new and not ignored), past-run records aside."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        path = REPO / name
        if not name.startswith(RECORDS) and path.suffix in TEXT_SUFFIXES and path.is_file():
            yield path


def test_nothing_the_project_runs_names_the_shared_folder():
    this = Path(__file__).resolve()
    offenders = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
                 for path in _project_files() if path.resolve() != this
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if SHARED_PATH.search(line)]
    assert offenders == []


def test_every_package_and_the_build_files_are_scanned():
    scanned = {path.relative_to(REPO).parts[0] for path in _project_files()}
    assert {"pipeline", "stages", "cache_schema", "inference", "study", "model_tools", "common", "benchmarks",
            "tests", "data", "docs", "Makefile", "pyproject.toml", "setup.py", "README.md", ".ci"} <= scanned


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
