"""The sandbox's verdicts: pass, fail, timeout, setup error, and early exits that must fail."""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from stages.evaluate import sandbox as sandbox_module
from stages.evaluate.isolation import (UidPool, leftover_processes, shadow_plan, uid_block,
                                       uid_pool, uid_range)
from stages.evaluate.sandbox import Limits, Sandbox, SandboxError


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sandbox_root")


@pytest.fixture(scope="module")
def sandbox(tmp_root):
    return Sandbox(Limits(timeout_s=5, memory_mb=1024), tmp_root=tmp_root, trust_model_code=True)


@pytest.fixture(autouse=True)
def machine_left_clean(tmp_root):
    yield
    assert leftover_processes() == []
    assert list(tmp_root.iterdir()) == []  # every program's temp dir was removed


def _machine_has_namespaces() -> bool:
    """What `unshare` itself says: root and new net/mount/pid namespaces work here."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    cmd = ["unshare", "--net", "--mount", "--pid", "--fork", "true"]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_isolation_is_detected_and_recorded(sandbox):
    assert sandbox.isolation in ("namespaces", "rlimits")
    if sandbox.isolation == "rlimits":
        assert sandbox.isolation_reason  # says why the namespaces could not be used
    # Where the machine can build the jail, falling back to rlimits would be a bug.
    assert (sandbox.isolation == "namespaces") == _machine_has_namespaces(), \
        sandbox.isolation_reason


def test_correct_and_wrong_programs(sandbox):
    ok, wrong, crash = sandbox.run_many([
        "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n",
        "def add(a, b):\n    return a - b\nassert add(2, 3) == 5\n",
        "def add(a, b):\n    return a +\n",
    ])
    assert ok.status == "passed" and ok.message == ""
    assert wrong.status == "failed" and wrong.message.endswith("AssertionError")
    assert crash.status == "failed" and "SyntaxError" in crash.message


def test_results_keep_program_order_across_workers(sandbox):
    programs = [f"assert {i} % 3 != 0" for i in range(8)]
    statuses = [r.status for r in sandbox.run_many(programs)]
    assert statuses == ["failed" if i % 3 == 0 else "passed" for i in range(8)]


def test_output_stdin_and_environment(sandbox):
    program = ("import os, sys\nprint('x' * 100000)\n"
               "assert sys.stdin.read() == ''\n"
               "assert os.environ['HOME'] == os.getcwd()\n"
               "assert not any('PROXY' in k.upper() for k in os.environ)\n"
               "assert 'PYTEST_CURRENT_TEST' not in os.environ\n"
               "open('scratch.txt', 'w').write('the working directory is writable')\n")
    assert sandbox.run(program).status == "passed"


def test_message_is_the_tail_of_stderr(sandbox):
    result = sandbox.run("import sys\nfor i in range(5000):\n"
                         "    print('line', i, file=sys.stderr)\nraise ValueError('boom')\n")
    assert result.status == "failed"
    assert result.message.endswith("ValueError: boom") and "line 0\n" not in result.message
    assert len(result.message) <= 1500 and not result.message.startswith("ine")


def test_timeout(tmp_root):
    quick = Sandbox(Limits(timeout_s=1), tmp_root=tmp_root, workers=1, trust_model_code=True)
    result = quick.run("while True:\n    pass\n")
    assert result.status == "timeout" and result.duration_s < 4


def test_unstartable_program_is_a_sandbox_error_not_a_failure(tmp_root, tmp_path):
    broken = Sandbox(tmp_root=tmp_root, workers=1, python=str(tmp_path / "no-such-python"),
                     trust_model_code=True)
    result = broken.run("pass")
    assert result.status == "error" and "akd-sandbox" in result.message


EARLY_EXITS = {
    "exit": "exit(0)",
    "quit": "quit()",
    "sys.exit()": "import sys\nsys.exit()",
    "sys.exit(0)": "import sys\nsys.exit(0)",
    "raise SystemExit": "raise SystemExit",
    "raise SystemExit(0)": "raise SystemExit(0)",
    "os._exit(0)": "import os\nos._exit(0)",
    "exec true": "import os\nos.execv('/bin/true', ['true'])",
    "exit inside the candidate": "def f(x):\n    import sys\n    sys.exit(0)\nassert f(1) == 2",
    "exit from a thread": ("import os, threading, time\n"
                           "threading.Thread(target=lambda: os._exit(0)).start()\ntime.sleep(5)"),
    "closed stdout then exit": "import sys\nsys.stdout.close()\nsys.exit(0)",
}


@pytest.mark.parametrize("name", list(EARLY_EXITS))
def test_early_exit_with_status_zero_fails(sandbox, name):
    program = EARLY_EXITS[name] + "\nassert False, 'the tests would fail'\n"
    result = sandbox.run(program)
    assert result.status == "failed", result
    assert "before its tests finished" in result.message


def test_shadow_plan_covers_tmp_and_closed_ancestors(tmp_path):
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    plan = shadow_plan([str(closed / "inner")])
    tmp = os.path.realpath("/tmp")
    inner = str((closed / "inner").resolve())
    if inner.startswith(tmp + "/"):
        assert plan == [{"shadow": tmp, "keep": [inner]}]
    else:
        assert {"shadow": str(closed.resolve()), "keep": [inner]} in plan


def test_bad_isolation_option():
    with pytest.raises(SandboxError, match="isolation"):
        Sandbox(isolation="docker")


def test_uid_pool_gives_distinct_unprivileged_uids():
    pool = UidPool()
    uids = [pool.acquire() for _ in range(4)]
    assert len(set(uids)) == 4 and all(u in uid_range() and u != 0 for u in uids)
    pool.release(uids[0])
    assert pool.acquire() == uids[0]


def test_without_the_jail_model_code_is_refused_unless_trusted(monkeypatch, tmp_path):
    """Not root (simulated): resource limits only, so the program could kill the evaluator;
    the sandbox refuses unless the caller says the code is trusted."""
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 1000)
    sandbox_module.detect_isolation.cache_clear()
    try:
        with pytest.raises(SandboxError, match="not running as root.*--trust-model-code"):
            Sandbox(tmp_root=tmp_path)
        with pytest.raises(SandboxError, match="--trust-model-code"):
            Sandbox(tmp_root=tmp_path, isolation="rlimits")
        trusted = Sandbox(tmp_root=tmp_path, workers=1, trust_model_code=True)
        assert trusted.isolation == "rlimits" and trusted.run("assert 1").status == "passed"
    finally:
        sandbox_module.detect_isolation.cache_clear()


def test_the_default_address_space_leaves_room(tmp_root):
    """3 GiB of reserved address space (what 40 threads take on a 16-core machine, or a large
    library) is not memory used: the default limit must allow it."""
    program = ("import mmap\nnoreserve = getattr(mmap, 'MAP_NORESERVE', 0x4000)  # Linux's value\n"
               "flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | noreserve\n"
               "m = mmap.mmap(-1, 3 << 30, flags=flags)\nm[0] = 1\n")
    roomy = Sandbox(tmp_root=tmp_root, workers=1, trust_model_code=True)
    assert roomy.run(program).status == "passed"


def test_threads_do_not_multiply_the_address_space(tmp_root):
    """glibc would give each thread a 64 MiB arena (up to 8 per core): the sandbox caps them."""
    program = ("import threading\nbarrier = threading.Barrier(40)\n"
               "def work():\n    x = [bytearray(100000) for _ in range(5)]\n    barrier.wait()\n"
               "threads = [threading.Thread(target=work) for _ in range(40)]\n"
               "for t in threads:\n    t.start()\nfor t in threads:\n    t.join()\n")
    small = Sandbox(Limits(memory_mb=1024), tmp_root=tmp_root, workers=1, trust_model_code=True)
    result = small.run(program)
    assert result.status == "passed", result


@pytest.mark.skipif(os.geteuid() != 0, reason="starting processes under other uids needs root")
def test_leftover_check_counts_only_this_process_uid_block():
    """Another evaluation on the machine (another uid block) running programs is not ours."""
    own, foreign = uid_pool().uids[-1], uid_block(os.getpid() + 1)[0]
    assert foreign not in uid_pool().uids
    sleepers = [subprocess.Popen(["sleep", "30"], user=uid, group=uid) for uid in (own, foreign)]
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(
                Path(f"/proc/{p.pid}").exists() for p in sleepers):
            time.sleep(0.01)
        left = leftover_processes()
        assert not [line for line in left if line.endswith(f"uid={foreign}")], left
        assert [line for line in left if line.endswith(f"uid={own}")], left
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
