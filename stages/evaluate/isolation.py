"""The harness side of the namespace jail (jail.py): which directories it covers, and which
unprivileged uid each program runs as."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterable

UID_BASE = 100_000
UID_BLOCK = 256  # uids per evaluating process: at most this many programs run at once
UID_BLOCKS = 4096


def shadow_plan(keep_paths: Iterable[str]) -> list[dict]:
    """Directories the jail covers with an empty tmpfs (`shadow`) and the trees below each that
    must stay visible (`keep`): always /tmp, plus the first directory other users cannot enter
    above each keep path (e.g. /root above a pyenv interpreter)."""
    tmp = os.path.realpath("/tmp")
    groups: dict[str, list[str]] = {tmp: []}
    for path in sorted({os.path.realpath(p) for p in keep_paths}):
        shadow = tmp if _is_under(path, tmp) else _first_closed_ancestor(path)
        if shadow is None:
            continue
        keeps = groups.setdefault(shadow, [])
        if not any(_is_under(path, k) for k in keeps):
            keeps.append(path)
    return [{"shadow": shadow, "keep": keeps} for shadow, keeps in groups.items()]


def _is_under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


def _first_closed_ancestor(path: str) -> str | None:
    parts = Path(path).parts
    for depth in range(2, len(parts)):
        ancestor = str(Path(*parts[:depth]))
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None


def interpreter_paths(python: str) -> list[str]:
    """The trees the program's interpreter needs: its binary's folder and its prefixes."""
    paths = [os.path.dirname(os.path.realpath(python))]
    if python == sys.executable:
        return paths + [sys.prefix, sys.base_prefix]
    try:
        out = subprocess.run([python, "-I", "-S", "-c",
                              "import sys; print(sys.prefix); print(sys.base_prefix)"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return paths  # an interpreter that cannot start fails every program as an "error"
    return paths + out.split()


def uid_range() -> range:
    """Every uid a sandbox of any process on this machine may use."""
    return range(UID_BASE, UID_BASE + UID_BLOCK * UID_BLOCKS)


def uid_block(pid: int) -> range:
    """The uids the sandbox of process `pid` draws from (one block per evaluating process)."""
    start = UID_BASE + (pid % UID_BLOCKS) * UID_BLOCK
    return range(start, start + UID_BLOCK)


class UidPool:
    """A distinct uid for every program running at once: RLIMIT_NPROC counts per uid, so a
    fork bomb exhausts only its own budget, and programs cannot signal each other. Each process
    draws from its own block (chosen by pid), so two evaluations on one machine do not share."""

    def __init__(self):
        self._pid = os.getpid()
        self.uids = uid_block(self._pid)
        self._free = list(reversed(self.uids))
        self._cond = threading.Condition()

    def acquire(self) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._free)
            return self._free.pop()

    def release(self, uid: int) -> None:
        with self._cond:
            self._free.append(uid)
            self._cond.notify()


_pools: dict[int, UidPool] = {}
_pools_lock = threading.Lock()


def uid_pool() -> UidPool:
    """This process's pool (a forked child gets a fresh one for its own pid)."""
    with _pools_lock:
        pid = os.getpid()
        if pid not in _pools:
            _pools[pid] = UidPool()
        return _pools[pid]


def leftover_processes(uids: range | None = None) -> list[str]:
    """Processes running under a uid of `uids` ("pid name uid"), by default this process's
    own block: none should outlive its program. Another evaluation on the machine uses another
    block, so its running programs are not counted. For checks and diagnostics."""
    uids = uid_pool().uids if uids is None else uids
    left = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
        except OSError:  # it ended while we looked
            continue
        uid = int(fields.get("Uid", "0").split()[0])
        if uid in uids:
            left.append(f"{status.parent.name} {fields.get('Name', '').strip()} uid={uid}")
    return left
