"""The sandbox's verdicts: pass, fail, timeout, setup error, and early exits that must fail."""
import os
import shutil
import subprocess

import pytest

from stages.evaluate.isolation import UidPool, leftover_processes, shadow_plan, uid_range
from stages.evaluate.sandbox import Limits, Sandbox, SandboxError


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sandbox_root")


@pytest.fixture(scope="module")
def sandbox(tmp_root):
    return Sandbox(Limits(timeout_s=5, memory_mb=1024), tmp_root=tmp_root)


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
    quick = Sandbox(Limits(timeout_s=1), tmp_root=tmp_root, workers=1)
    result = quick.run("while True:\n    pass\n")
    assert result.status == "timeout" and result.duration_s < 4


def test_unstartable_program_is_a_sandbox_error_not_a_failure(tmp_root, tmp_path):
    broken = Sandbox(tmp_root=tmp_root, workers=1, python=str(tmp_path / "no-such-python"))
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
