"""The allocator a command runs with: the decision (install, preload or glibc thresholds), the
wrapper the Makefile starts commands through, and the log line read from a process's state."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inference import allocator
from inference.allocator import (DEBIAN_PACKAGE, GLIBC_MMAP_THRESHOLD_MAX, allocator_env, describe,
                                 find_tcmalloc, glibc_settings, install_tcmalloc)
from inference.cpu_env import apply_cpu_defaults

REPO = Path(__file__).resolve().parents[1]
LIB = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
INSTALLED = find_tcmalloc()


def test_find_tcmalloc_takes_the_first_present(tmp_path):
    assert find_tcmalloc((str(tmp_path / "*/libtcmalloc_minimal.so.4"),)) is None
    (tmp_path / "x86_64-linux-gnu").mkdir()
    lib = tmp_path / "x86_64-linux-gnu" / "libtcmalloc_minimal.so.4"
    lib.touch()
    assert find_tcmalloc((str(tmp_path / "none"), str(tmp_path / "*/libtcmalloc_minimal.so.4"))) == lib


def test_env_preloads_tcmalloc_when_present():
    assert allocator_env({}, LIB) == {"LD_PRELOAD": str(LIB)}
    # another preloaded library (not an allocator) stays, after tcmalloc
    assert allocator_env({"LD_PRELOAD": "/opt/libfoo.so"}, LIB) == {"LD_PRELOAD": f"{LIB}:/opt/libfoo.so"}


@pytest.mark.parametrize("preload", ["/usr/lib/libjemalloc.so.2", "/x/libtcmalloc.so:/opt/libfoo.so",
                                     "/opt/libfoo.so /usr/local/lib/libmimalloc.so"])
def test_env_keeps_an_allocator_the_user_preloaded(preload):
    assert allocator_env({"LD_PRELOAD": preload}, LIB) == {}
    assert allocator_env({"LD_PRELOAD": preload}, None) == {}


def test_env_without_tcmalloc_raises_glibc_thresholds_and_keeps_the_users():
    env = allocator_env({}, None)
    assert set(env) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    # as high as this glibc accepts: 1 GiB, or the documented 32 MiB cap where it enforces it
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) in (2**30, GLIBC_MMAP_THRESHOLD_MAX)
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) == 2**30
    assert allocator_env({"MALLOC_MMAP_THRESHOLD_": "65536"}, None) == {
        "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def test_mmap_threshold_falls_back_to_the_cap_where_glibc_refuses_more(monkeypatch):
    monkeypatch.setattr(allocator, "glibc_accepts_mmap_threshold", lambda value: False)
    glibc_settings.cache_clear()
    try:
        assert glibc_settings()["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
    finally:
        glibc_settings.cache_clear()


def test_cpu_defaults_set_the_allocator_for_vllm_workers():
    env = {"VLLM_CPU_KVCACHE_SPACE": "8"}
    changed = apply_cpu_defaults(env, tcmalloc=lambda: LIB)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "8" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert "VLLM_CPU_KVCACHE_SPACE" not in changed and changed["LD_PRELOAD"] == str(LIB)
    env = {"LD_PRELOAD": "/x/libtcmalloc.so"}
    apply_cpu_defaults(env, tcmalloc=lambda: LIB)
    assert env["LD_PRELOAD"] == "/x/libtcmalloc.so"
    env = {}
    apply_cpu_defaults(env, tcmalloc=lambda: None)
    assert "LD_PRELOAD" not in env and "MALLOC_TRIM_THRESHOLD_" in env


class FakeApt:
    """apt-get as a recorder; `works_after` calls in, the library appears."""

    def __init__(self, lib: Path, works_after: int | None, fail=None):
        self.lib, self.works_after, self.fail, self.calls = lib, works_after, fail, []

    def __call__(self, command, **kwargs):
        self.calls.append(command[1:])
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive" and kwargs["timeout"]
        if self.fail:
            raise self.fail
        if self.works_after is not None and len(self.calls) >= self.works_after:
            self.lib.touch()

    def find(self):
        return self.lib if self.lib.exists() else None


def test_install_does_nothing_when_present(tmp_path):
    apt = FakeApt(tmp_path / "lib.so", works_after=None)
    apt.lib.touch()
    assert install_tcmalloc(uid=0, find=apt.find, run=apt, apt_get="apt-get") == ("present", apt.lib)
    assert apt.calls == []


def test_install_needs_root_and_apt(tmp_path, monkeypatch):
    apt = FakeApt(tmp_path / "lib.so", works_after=1)
    assert install_tcmalloc(uid=1000, find=apt.find, run=apt, apt_get="apt-get") == ("not root", None)
    monkeypatch.setattr(allocator.shutil, "which", lambda name: None)
    assert install_tcmalloc(uid=0, find=apt.find, run=apt) == ("no apt-get", None)
    assert apt.calls == []


def test_install_as_root(tmp_path):
    apt = FakeApt(tmp_path / "lib.so", works_after=1)
    assert install_tcmalloc(uid=0, find=apt.find, run=apt, apt_get="apt-get") == ("installed", apt.lib)
    assert apt.calls == [["install", "-y", "-q", "--no-install-recommends", DEBIAN_PACKAGE]]


def test_install_updates_the_package_lists_once_when_the_package_is_unknown(tmp_path):
    apt = FakeApt(tmp_path / "lib.so", works_after=3)
    assert install_tcmalloc(uid=0, find=apt.find, run=apt, apt_get="apt-get")[0] == "installed"
    assert [c[0] for c in apt.calls] == ["install", "update", "install"]


@pytest.mark.parametrize("fail", [None, subprocess.TimeoutExpired("apt-get", 300), OSError("no")])
def test_install_failure_is_tolerated(tmp_path, fail):
    apt = FakeApt(tmp_path / "lib.so", works_after=None, fail=fail)
    assert install_tcmalloc(uid=0, find=apt.find, run=apt, apt_get="apt-get") == ("install failed", None)


def _maps(tmp_path, *paths) -> str:
    lines = ["55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]"]
    lines += [f"7f3a1c000000-7f3a1c020000 r-xp 00000000 fd:01 123  {p}" for p in paths]
    maps = tmp_path / "maps"
    maps.write_text("\n".join(lines) + "\n")
    return str(maps)


def test_describe_reads_the_mapped_allocator(tmp_path):
    maps = _maps(tmp_path, "/usr/lib/x86_64-linux-gnu/libc.so.6",
                 "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10")
    line = describe(maps, {"MALLOC_MMAP_THRESHOLD_": "1"})
    assert line == "allocator: tcmalloc (/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10)"


def test_describe_glibc_names_its_thresholds(tmp_path, monkeypatch):
    maps = _maps(tmp_path, "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert describe(maps, {}).startswith("allocator: glibc malloc, default thresholds (")
    monkeypatch.setattr(allocator, "glibc_accepts_mmap_threshold", lambda value: value <= 32 * 2**20)
    assert describe(maps, {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}) == (
        "allocator: glibc malloc, thresholds raised: mmap threshold 32 MiB, trim threshold 1 GiB")
    assert describe(maps, {"MALLOC_MMAP_THRESHOLD_": str(2**30)}) == (
        "allocator: glibc malloc, thresholds raised: mmap threshold 1 GiB (ignored: over this glibc's "
        "limit), trim threshold default")
    assert describe(maps, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}).endswith(
        "mmap threshold default, trim threshold 1 MiB")


def _describe_in_child(env: dict, wrapped: bool = False) -> str:
    """The log line of a real process started with `env` (through the wrapper if `wrapped`)."""
    code = [sys.executable, "-c", "from inference.allocator import describe; print(describe())"]
    command = [sys.executable, "-m", "inference.allocator", "exec", "--", *code] if wrapped else code
    env = {**env, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}


def test_log_line_of_a_plain_process_is_glibc_default():
    assert _describe_in_child(_clean_env()).startswith("allocator: glibc malloc, default thresholds")


@pytest.mark.skipif(INSTALLED is None, reason=f"{DEBIAN_PACKAGE} is not installed")
def test_log_line_of_a_process_started_with_tcmalloc_preloaded():
    line = _describe_in_child({**_clean_env(), "LD_PRELOAD": str(INSTALLED)})
    assert line.startswith("allocator: tcmalloc (/") and "libtcmalloc_minimal.so.4" in line


def test_wrapper_starts_the_command_on_the_fast_allocator():
    line = _describe_in_child(_clean_env(), wrapped=True)
    if INSTALLED is not None:
        assert line.startswith("allocator: tcmalloc (")
    else:
        assert line.startswith("allocator: glibc malloc, thresholds raised: mmap threshold ")
        assert "ignored" not in line and "trim threshold 1 GiB" in line


def test_wrapper_keeps_the_users_malloc_settings():
    env = {**_clean_env(), "MALLOC_MMAP_THRESHOLD_": "1048576", "LD_PRELOAD": "/nonexistent/libjemalloc.so"}
    # the loader skips a preload it cannot open (with a warning), so glibc with the user's value runs
    assert _describe_in_child(env, wrapped=True) == (
        "allocator: glibc malloc, thresholds raised: mmap threshold 1 MiB, trim threshold default")


def test_makefile_commands_install_then_start_through_the_wrapper(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-n", "-C", str(REPO), f"VENV={venv}", "distill", "eval", "bench",
                          "test-fast"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    install = next(i for i, line in enumerate(lines) if "-m inference.allocator install" in line)
    for command in ("akd teacher-cache", "akd distill", "akd eval", "bench_$b.py", "-m pytest -q"):
        at = next(i for i, line in enumerate(lines) if command in line)
        assert f"{venv}/bin/python -m inference.allocator exec -- " in lines[at], command
        assert at > install, command
    assert "LD_PRELOAD" not in out  # decided when each command starts, never when make reads the file


@pytest.mark.parametrize("args", [
    ["eval", "--model", "/nonexistent/model"],
    ["distill", "--cache", str(REPO / "data"), "--student", "/nonexistent/model"],
    ["teacher-cache", "--teacher", "/nonexistent/model", "--dataset", "/nonexistent.json", "--out", "/nonexistent/c"],
])
def test_commands_log_their_allocator_first(args):
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0  # the bad model stops it; the allocator line came first
    assert result.stderr.splitlines()[0] == describe()
