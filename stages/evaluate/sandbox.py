"""Run untrusted Python programs (model code + a task's tests) one process each, contained.

Each program gets its own temporary directory, a scrubbed environment, resource limits, a new
session, a wall-clock timeout after which its whole process group is SIGKILLed, and, where the
machine allows it (root + namespaces; see jail.py), no network, a read-only filesystem outside
its tmpfs working directory and an unprivileged uid. `Sandbox.isolation` records which.

A program passes only if it exits with status 0 *and* reaches the sentinel appended after its
tests: the sentinel copies a random per-run nonce from a pipe the harness filled into a second
pipe. A program that ends the interpreter early (exit(), sys.exit(), os._exit(0), SystemExit,
exec of another binary) never writes it and fails. This guards against accidental early exits,
not against code written to forge the sentinel (it runs in the same process and could read the
pipe itself); models are not assumed to attack the harness.

Without the jail (not root, or no namespaces: `rlimits`) a program runs as the evaluating user:
it could kill the evaluator, leave a setsid() daemon behind and write wherever that user can.
Such a Sandbox is refused unless the caller says the code is trusted (`trust_model_code`).
"""
from __future__ import annotations

import functools
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.settings import setting
from stages.evaluate import jail
from stages.evaluate.errors import EvaluationError
from stages.evaluate.isolation import interpreter_paths, shadow_plan, uid_pool

JAIL_SCRIPT = Path(jail.__file__)
ISOLATED_WORKDIR = Path("/tmp/work")
STATUSES = ("passed", "failed", "timeout", "error")
MESSAGE_CHARS = 1500


class SandboxError(EvaluationError):
    """The sandbox was asked for something it cannot do."""


UNTRUSTED_WITHOUT_JAIL = (
    "refusing to run model code without the namespace jail ({reason}): with resource limits "
    "only, a program could kill the evaluator, leave processes behind and write anywhere this "
    "user can; run as root on a machine with namespaces, or pass --trust-model-code")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = setting(10.0, "Sandbox: wall-clock seconds per program (its whole process "
                                     "group is killed after it).")
    # RLIMIT_AS, which counts address space, not memory used: the canonical HumanEval/MBPP
    # programs peak at 18 MiB, `import torch` at 0.6 GiB, each thread adds an 8 MiB stack.
    memory_mb: int = setting(4096, "Sandbox: address space per program (RLIMIT_AS, MiB; counts "
                                   "mapped, not used, memory).")
    max_processes: int = setting(64, "Sandbox: processes and threads per program (namespace jail "
                                     "only).")
    max_file_mb: int = setting(16, "Sandbox: largest file a program may write, stderr included (MiB).")
    workdir_mb: int = setting(64, "Sandbox: size of a program's working directory (MiB, namespace "
                                  "jail only).")

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise SandboxError(f"sandbox limit {name} must be > 0, got {value}")


@dataclass(frozen=True)
class ExecResult:
    status: str  # one of STATUSES
    message: str  # why it did not pass (last lines of stderr), "" when passed
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def default_tmp_root() -> str:
    """/dev/shm where it is a writable tmpfs (creating and removing a program's folder there
    costs microseconds, on a loaded disk several ms), else the system's temp folder."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def scrubbed_env(workdir: str) -> dict[str, str]:
    """What the program sees of the environment: nothing of ours (no proxies, tokens, paths)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # glibc gives each thread its own 64 MiB malloc arena, up to 8 per core: a program with
        # 40 threads would need 2.9 GiB of address space on a 16-core machine, 1.2 GiB on 2.
        "MALLOC_ARENA_MAX": "2",
    }


def sentinel(nonce_fd: int, done_fd: int) -> str:
    """Code appended after the tests; reaching it proves they all ran."""
    return (
        "\n\n# akd sandbox sentinel: only reached when every test above ran\n"
        f"__import__('os').write({done_fd}, __import__('os').read({nonce_fd}, 64))\n"
    )


def _tail(path: Path) -> str:
    """The last whole lines of a file, at most MESSAGE_CHARS characters."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - MESSAGE_CHARS))
        text = f.read().decode("utf-8", "replace")
    if size > MESSAGE_CHARS:
        text = text.partition("\n")[2]
    return text.strip()


class Sandbox:
    """Runs programs in parallel (`workers` at a time, default one per CPU core)."""

    def __init__(self, limits: Limits = Limits(), *, workers: int | None = None,
                 tmp_root: str | Path | None = None, isolation: str = "auto",
                 python: str = sys.executable, trust_model_code: bool = False):
        if isolation not in ("auto", "namespaces", "rlimits"):
            raise SandboxError(f"isolation must be auto, namespaces or rlimits, not {isolation!r}")
        self.limits = limits
        self.python = python  # the interpreter that runs the programs
        self.workers = workers or os.cpu_count() or 1
        self.tmp_root = str(tmp_root) if tmp_root else default_tmp_root()
        if not os.path.isdir(self.tmp_root):
            raise SandboxError(f"tmp_root {self.tmp_root} is not a directory")
        self.isolation_reason = ""
        if isolation == "auto":
            isolation, self.isolation_reason = detect_isolation(self.tmp_root)
        if isolation == "rlimits" and not trust_model_code:
            reason = self.isolation_reason or "rlimits was asked for"
            raise SandboxError(UNTRUSTED_WITHOUT_JAIL.format(reason=reason))
        self.isolation = isolation
        self.trust_model_code = trust_model_code
        self._shadows = shadow_plan(interpreter_paths(python)) if isolation == "namespaces" else []

    def run_many(self, programs: Sequence[str], progress=None) -> list[ExecResult]:
        """Results in program order. `progress`, if given, is called once per finished program."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self.run, p) for p in programs]
            results = []
            for fut in futures:
                results.append(fut.result())
                if progress is not None:
                    progress()
        return results

    def run(self, program: str) -> ExecResult:
        uid = uid_pool().acquire()
        tmp = tempfile.mkdtemp(prefix="akd-sbx-", dir=self.tmp_root)
        try:
            return self._run_in(Path(tmp), program, uid)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            uid_pool().release(uid)

    def _run_in(self, tmp: Path, program: str, uid: int) -> ExecResult:
        if self.isolation == "namespaces":
            workdir = ISOLATED_WORKDIR  # exists only inside the jail's mount namespace
        else:
            workdir = tmp / "work"
            workdir.mkdir()
        nonce = secrets.token_hex(16).encode()
        nonce_r, nonce_w = os.pipe()
        done_r, done_w = os.pipe()
        try:
            os.write(nonce_w, nonce)
            os.close(nonce_w)
            nonce_w = -1
            (tmp / "program.py").write_text(program + sentinel(nonce_r, done_w))
            config = self._jail_config(tmp, workdir, uid)
            stderr_path = tmp / "stderr.txt"
            start = time.monotonic()
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(JAIL_SCRIPT), config],
                    cwd=tmp, env=scrubbed_env(str(workdir)), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(nonce_r, done_w),
                    start_new_session=True,
                )
            os.close(done_w)
            done_w = -1
            timed_out = self._wait(proc)
            duration = time.monotonic() - start
            os.set_blocking(done_r, False)
            try:
                reported = os.read(done_r, 64)
            except BlockingIOError:
                reported = b""
            return self._verdict(proc.returncode, timed_out, reported == nonce,
                                 _tail(stderr_path), duration)
        finally:
            for fd in (nonce_r, nonce_w, done_r, done_w):
                if fd >= 0:
                    os.close(fd)

    def _wait(self, proc: subprocess.Popen) -> bool:
        """Wait for the program; on timeout kill it all. Stragglers in its group die anyway."""
        timed_out = not _exited_within(proc, self.limits.timeout_s)
        if timed_out:
            if self.isolation == "namespaces":
                proc.terminate()  # the jail kills its namespace and reaps it (see jail.py)
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        _kill_group(proc.pid)
        proc.wait()
        _wait_group_gone(proc.pid)
        return timed_out

    def _verdict(self, code: int, timed_out: bool, nonce_seen: bool, err: str,
                 duration: float) -> ExecResult:
        if timed_out:
            return ExecResult("timeout", f"killed after {self.limits.timeout_s:g} s", duration)
        if code == jail.SETUP_FAILED and jail.SETUP_MARK in err:
            return ExecResult("error", err, duration)
        if code == 0 and nonce_seen:
            return ExecResult("passed", "", duration)
        if code == 0:
            why = "the program exited with status 0 before its tests finished"
            return ExecResult("failed", f"{why}\n{err}".strip(), duration)
        if code > 128:
            err = f"{err}\nkilled by {_signal_name(code - 128)}".strip()
        return ExecResult("failed", err or f"exit status {code}", duration)

    def _jail_config(self, tmp: Path, workdir: Path, uid: int) -> str:
        lim = self.limits
        mib = 1024 * 1024
        return jail.encode_config({
            "isolate": self.isolation == "namespaces",
            "python": self.python,
            "program": str(tmp / "program.py"),
            "workdir": str(workdir),
            "workdir_mb": lim.workdir_mb,
            "uid": uid,
            "shadows": self._shadows,
            "env": scrubbed_env(str(workdir)),
            "rlimits": {
                "RLIMIT_CPU": int(lim.timeout_s) + 1,
                "RLIMIT_AS": lim.memory_mb * mib,
                "RLIMIT_NPROC": lim.max_processes,
                "RLIMIT_FSIZE": lim.max_file_mb * mib,
                "RLIMIT_CORE": 0,
            },
        })


def _exited_within(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Block until the process exits or the timeout passes. A pidfd wakes us the moment it
    exits; Popen.wait(timeout) polls with sleeps of up to 50 ms, a third of a task's cost."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel / non-Linux)
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        exited = bool(poller.poll(timeout_s * 1000))
    finally:
        os.close(fd)
    if exited:
        proc.wait()
    return exited


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, settle_s: float = 2.0) -> None:
    """Wait (briefly) until no process of the group is left, killing any that still runs."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.005)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_PROBE = """
import os, socket
open('inside.txt', 'w').write('ok')
try:
    open(os.path.join(os.path.dirname(os.getcwd()), 'outside.txt'), 'w')
except OSError:
    pass
else:
    raise SystemExit('wrote outside the working directory')
if os.getuid() == 0:
    raise SystemExit('still root')
interfaces = [name for _, name in socket.if_nameindex()]
if interfaces != ['lo']:
    raise SystemExit(f'network interfaces visible: {interfaces}')
"""


@functools.lru_cache(maxsize=None)
def detect_isolation(tmp_root: str) -> tuple[str, str]:
    """("namespaces", "") when a probe program proves the full jail works here, else
    ("rlimits", why not). Run once per tmp root and process."""
    if os.geteuid() != 0:
        return "rlimits", "not running as root: namespaces and uid switching need it"
    probe = Sandbox(Limits(timeout_s=20), workers=1, tmp_root=tmp_root, isolation="namespaces")
    result = probe.run(_PROBE)
    if result.passed:
        return "namespaces", ""
    return "rlimits", f"namespace probe {result.status}: {result.message.splitlines()[-1:]}"

