"""The memory allocator a run starts with, and which one a running process really uses.

Training a 0.5B student frees and reallocates hundreds of MB of activations every step.
glibc's malloc hands such blocks back to the kernel and faults them in again each time;
tcmalloc (Debian's libtcmalloc-minimal4) keeps them, and so does glibc when told to
(MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_). The README has the measured step times.

The choice, in order: an allocator the user preloaded is kept; else tcmalloc, installed
first where it is missing and we are root (`install`); else glibc with raised thresholds.
LD_PRELOAD and MALLOC_*_ act only when a process starts, so the Makefile starts each command
through `python -m inference.allocator exec -- CMD`, which sets them and execs CMD; child
processes (vLLM's workers, the experiment's steps) inherit them.
"""
from __future__ import annotations

import argparse
import functools
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_PACKAGE = "libtcmalloc-minimal4"
TCMALLOC_GLOBS = ("/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4",
                  "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")
# Preloaded allocators we recognise, by library name -> the name the log line gives.
KNOWN_ALLOCATORS = {"libtcmalloc": "tcmalloc", "libjemalloc": "jemalloc", "libmimalloc": "mimalloc"}
# glibc: large blocks stay in the heap below the mmap threshold, and free memory at the heap's
# top goes back to the kernel above the trim threshold. mallopt(3) documents an upper limit of
# 4*1024*1024*sizeof(long) = 32 MiB (HEAP_MAX_SIZE/2 on 64-bit) for M_MMAP_THRESHOLD, and
# glibcs that enforce it ignore a larger value; since a set trim threshold also switches the
# dynamic mmap threshold off, an ignored value would pin it at 128 KiB, slower than the default.
# Other glibcs (Debian 12's 2.36) accept more, so the wanted value is asked of glibc itself.
GLIBC_MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * 8
WANTED_MMAP_THRESHOLD = 2**30
GLIBC_TRIM_THRESHOLD = 2**30
M_MMAP_THRESHOLD = -3  # malloc.h
APT_TIMEOUT_S = 300


def find_tcmalloc(globs=TCMALLOC_GLOBS) -> Path | None:
    """The first tcmalloc library present, or None."""
    for pattern in globs:
        for path in sorted(glob.glob(pattern)):
            return Path(path)
    return None


def preloaded_allocator(preload: str) -> str | None:
    """The allocator LD_PRELOAD already names (the user's choice), or None."""
    for entry in preload.replace(" ", ":").split(":"):
        for lib in KNOWN_ALLOCATORS:
            if Path(entry).name.startswith(lib):
                return entry
    return None


def allocator_env(environ, tcmalloc: Path | None) -> dict[str, str]:
    """The variables to add to `environ` so a process started with them runs on the fast
    allocator: LD_PRELOAD of `tcmalloc` when given, else glibc's raised thresholds. A
    preloaded allocator or a MALLOC_ value the user set is left alone."""
    preload = environ.get("LD_PRELOAD", "")
    if preloaded_allocator(preload):
        return {}
    if tcmalloc is not None:
        return {"LD_PRELOAD": f"{tcmalloc}:{preload}" if preload else str(tcmalloc)}
    return {key: value for key, value in glibc_settings().items() if key not in environ}


@functools.lru_cache(maxsize=None)
def glibc_settings() -> dict[str, str]:
    """The raised thresholds: the mmap one as high as this glibc accepts (1 GiB or its cap)."""
    mmap = (WANTED_MMAP_THRESHOLD if glibc_accepts_mmap_threshold(WANTED_MMAP_THRESHOLD)
            else GLIBC_MMAP_THRESHOLD_MAX)
    return {"MALLOC_MMAP_THRESHOLD_": str(mmap), "MALLOC_TRIM_THRESHOLD_": str(GLIBC_TRIM_THRESHOLD)}


@functools.lru_cache(maxsize=None)
def glibc_accepts_mmap_threshold(value: int) -> bool:
    """Whether mallopt(M_MMAP_THRESHOLD, value) succeeds here; asked in a throwaway process,
    since mallopt changes the threshold of the process that calls it."""
    probe = ("import ctypes, sys; libc = ctypes.CDLL(None); "
             f"sys.exit(0 if libc.mallopt({M_MMAP_THRESHOLD}, {int(value)}) == 1 else 1)")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # glibc's mallopt, not tcmalloc's
    try:
        return subprocess.run([sys.executable, "-S", "-c", probe], env=env, timeout=30,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def install_tcmalloc(*, uid: int | None = None, find=find_tcmalloc, run=subprocess.run,
                     apt_get: str | None = None) -> tuple[str, Path | None]:
    """Install Debian's libtcmalloc-minimal4 where it is missing and we may (root, apt-get).

    Returns (what happened, the library or None): "present", "installed", "not root",
    "no apt-get" or "install failed". Failures are tolerated: the caller falls back to glibc.
    """
    found = find()
    if found is not None:
        return "present", found
    if (os.geteuid() if uid is None else uid) != 0:
        return "not root", None
    apt_get = apt_get or shutil.which("apt-get")
    if not apt_get:
        return "no apt-get", None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-q", "--no-install-recommends", DEBIAN_PACKAGE]
    # A fresh image has no package lists: update once if the install cannot find the package.
    for commands in ([install], [[apt_get, "update", "-q"], install]):
        for command in commands:
            try:
                run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    timeout=APT_TIMEOUT_S, check=False)
            except (OSError, subprocess.SubprocessError):
                break
        found = find()
        if found is not None:
            return "installed", found
    return "install failed", None


def describe(maps_path: str = "/proc/self/maps", environ=os.environ) -> str:
    """One log line naming the allocator this process runs with, read from its actual state:
    the libraries mapped into it and the glibc tunables it was started with."""
    try:
        maps = Path(maps_path).read_text()
    except OSError:
        return "allocator: unknown (no /proc/self/maps)"
    for line in maps.splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        name = Path(path).name
        for lib, label in KNOWN_ALLOCATORS.items():
            if name.startswith(lib):
                return f"allocator: {label} ({path})"
    return "allocator: glibc malloc, " + _glibc_thresholds(environ)


def _glibc_thresholds(environ) -> str:
    tunables = dict(item.split("=", 1) for item in environ.get("GLIBC_TUNABLES", "").split(":")
                    if "=" in item)
    mmap = environ.get("MALLOC_MMAP_THRESHOLD_") or tunables.get("glibc.malloc.mmap_threshold")
    trim = environ.get("MALLOC_TRIM_THRESHOLD_") or tunables.get("glibc.malloc.trim_threshold")
    if mmap is None and trim is None:
        return ("default thresholds (large buffers are mapped and unmapped at every step: "
                f"slow training; install {DEBIAN_PACKAGE} or start it through make)")
    parts = []
    for what, value in (("mmap", mmap), ("trim", trim)):
        if value is None:
            parts.append(f"{what} threshold default")
            continue
        size = _bytes(value)
        text = f"{what} threshold {_size(size) if size is not None else repr(value)}"
        if what == "mmap" and (size is None or not glibc_accepts_mmap_threshold(size)):
            text += " (ignored: over this glibc's limit)"
        parts.append(text)
    return "thresholds raised: " + ", ".join(parts)


def _bytes(value: str) -> int | None:
    try:
        return int(value, 0)
    except ValueError:
        return None


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _install_message(outcome: str) -> str | None:
    if outcome == "present":
        return None
    if outcome == "installed":
        return f"allocator: installed {DEBIAN_PACKAGE} (tcmalloc)"
    fix = "" if outcome == "install failed" else f"; `sudo apt-get install {DEBIAN_PACKAGE}` is faster"
    return f"allocator: {DEBIAN_PACKAGE} missing ({outcome}): glibc malloc with raised thresholds{fix}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.allocator", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("install", help=f"install {DEBIAN_PACKAGE} if missing and root")
    run_parser = sub.add_parser("exec", help="run CMD with the allocator set up")
    run_parser.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("describe", help="the allocator this process runs with")
    args = parser.parse_args(argv)
    if args.action == "install":
        message = _install_message(install_tcmalloc()[0])
        if message:
            print(message, file=sys.stderr, flush=True)
        return 0
    if args.action == "describe":
        print(describe())
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("exec needs a command")
    env = {**os.environ, **allocator_env(os.environ, find_tcmalloc())}
    try:
        os.execvpe(cmd[0], cmd, env)
    except OSError as exc:
        print(f"allocator: cannot run {cmd[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
