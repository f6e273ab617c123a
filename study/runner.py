"""Runs the grid's steps in order, once each, and says where it stands.

A step is done when its record (steps/<name>.json) says it finished with the same command
and its output still verifies; anything else runs again, and the stages underneath resume
(teacher-cache from its shards, distill from its checkpoint, eval from saved answers). One
runner at a time holds the grid's lock; its children die with it, so a killed grid leaves
no half-trained student writing behind the next one's back.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from common.files import atomic_write_json
from study.config import ExperimentConfig, ExperimentError, save_or_check_config
from study.plan import Step, build_plan

LOG_FILE, LOCK_FILE = "experiment.log", ".lock"
_PR_SET_PDEATHSIG = 1


def run_grid(config: ExperimentConfig, *, only: str | None = None, echo=print) -> dict[str, str]:
    """Run every step not yet done (or only those whose name contains `only`); returns
    each step's final state. A failed step blocks the steps that need it, not the rest."""
    save_or_check_config(config)
    steps = build_plan(config)
    states: dict[str, str] = {}
    with _grid_lock(config.root):
        for step in steps:
            if only and only not in step.name:
                states[step.name] = step_state(config.root, step)
                continue
            blocked = [n for n in step.needs if states.get(n) != "done"]
            if step_state(config.root, step) == "done":
                states[step.name] = "done"
            elif blocked:
                states[step.name] = "blocked"
                _log(config.root, echo, f"blocked {step.name}: needs {', '.join(blocked)}")
            else:
                states[step.name] = _run_step(config.root, step, echo)
    return states


def step_state(root: Path, step: Step) -> str:
    """done | running | failed | pending, from the step's record and its output."""
    record = read_record(root, step.name)
    if record is None:
        return "pending"
    if record.get("status") == "running":
        return "running" if _grid_is_running(root) else "pending"
    if record.get("status") != "done":
        return "failed"
    try:
        if step.command is not None and record.get("command") != _akd_args(step):
            return "pending"  # the command changed (e.g. another template was chosen)
    except ExperimentError:
        return "pending"  # its command depends on a step that is not done
    return "done" if step.verify() else "pending"


def read_record(root: Path, name: str) -> dict | None:
    path = root / "steps" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _run_step(root: Path, step: Step, echo) -> str:
    args = _akd_args(step) if step.command else None
    record = {"name": step.name, "kind": step.kind, "output": str(step.output), "command": args,
              "status": "running", "started": _now(), "pid": os.getpid()}
    _write_record(root, record)
    _log(root, echo, f"start {step.name}" + (f": akd {' '.join(args)}" if args else ""))
    started = time.perf_counter()
    if args is None:
        try:
            step.action()
            code, peak = 0, None
        except Exception as exc:  # recorded and logged; the grid goes on with other steps
            _log(root, echo, f"{step.name}: {type(exc).__name__}: {exc}")
            code, peak = 1, None
    else:
        code, peak = _run_command(args, root / "logs" / f"{step.name}.log")
    ok = code == 0 and step.verify()
    if ok:
        for path in step.disposable:
            shutil.rmtree(path, ignore_errors=True)
    record.update(status="done" if ok else "failed", returncode=code, finished=_now(),
                  wall_s=round(time.perf_counter() - started, 1), peak_rss_gib=peak)
    _write_record(root, record)
    how = f"{record['wall_s']:.0f} s" + (f", peak {peak:.1f} GiB" if peak else "")
    _log(root, echo, f"{'done' if ok else 'FAILED'} {step.name} ({how})"
         + ("" if ok else f"; see {root / 'logs' / (step.name + '.log')}"))
    return "done" if ok else "failed"


def _run_command(args: list[str], log_path: Path) -> tuple[int, float]:
    """`akd ARGS` in a child process that dies with us; returns its exit code and the peak
    resident memory of its process tree (sampled each second, GiB)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {_now()} akd {' '.join(args)}\n".encode())
        log.flush()
        child = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=log,
                                 stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        peak = _PeakMemory(child.pid)
        code = child.wait()
        peak.stop()
    return code, round(peak.gib, 2)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _PeakMemory:
    """Sums RSS over a process and its descendants (vLLM has worker processes)."""

    def __init__(self, pid: int, every_s: float = 1.0):
        import psutil

        self.gib, self._stop = 0.0, threading.Event()
        self._process, self._every = psutil.Process(pid), every_s
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                tree = [self._process, *self._process.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree if p.is_running())
                self.gib = max(self.gib, rss / 2**30)
            except psutil.Error:
                pass
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _akd_args(step: Step) -> list[str]:
    return [str(a) for a in step.command()]


@contextmanager
def _grid_lock(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentError(f"another `akd experiment run` is working on {root} "
                                  f"(see {root / LOG_FILE})") from None
        yield


def _grid_is_running(root: Path) -> bool:
    if not (root / LOCK_FILE).exists():
        return False
    with open(root / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def _write_record(root: Path, record: dict) -> None:
    path = root / "steps" / f"{record['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)


def _log(root: Path, echo, message: str) -> None:
    line = f"{_now()} {message}"
    with open(root / LOG_FILE, "a") as log:
        log.write(line + "\n")
    echo(line)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
