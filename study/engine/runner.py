"""Runs a plan's steps in order, once each, and says where it stands.

A plan is a list of `Step`s under one root folder, made by an experiment's definition (grid
v2: study/grid_v2/plan.py; the on-policy rounds: study/onpolicy/rounds.py); the engine knows
no experiment. A step is done when its record
(steps/<name>.json) says it finished with the same command and its output still verifies
(or with the command it started with before a revision of the settings: `carry_over`);
anything else runs again, and the stages underneath resume (teacher-cache from its shards,
rollout from its shards, distill from its checkpoint, eval from saved answers). One runner
at a time holds the root's lock; its children die with it, so a killed run leaves no
half-trained student writing behind the next one's back.

With a keep folder (study/engine/keep.py) a finished step's small outputs are copied
there, and a new machine copies them back first: a step whose weights went with the old
machine stays done, and is run again only when a step still to run needs its output.
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
from common.machine import machine_facts
from study.engine.keep import KeepError, forget_partial_answers, keep
from study.engine.settings import ExperimentError
from study.engine.steps import Step

LOG_FILE, LOCK_FILE = "experiment.log", ".lock"
STARTED = "started"  # the status of a step begun before a revision, carried over without a record of its own
REVISED = "revised_command"  # a record's command under the settings revised since the step began
_PR_SET_PDEATHSIG = 1


def kept_paths(root: Path, step: Step) -> list[Path]:
    """A finished step's small outputs, its record and its log (the report counts attempts there)."""
    return [*step.kept_paths, root / "steps" / f"{step.name}.json", root / "logs" / f"{step.name}.log"]


def run_steps(root: Path, steps: list[Step], *, only: str | None = None, echo=print,
              log_name: str = LOG_FILE, command: str = "akd experiment run",
              show_output: bool = False, keep_dir: Path | None = None) -> dict[str, str]:
    """Run every step not yet done (or only those whose name contains `only`), and every done
    step whose output is gone that one of them needs; returns each step's final state. A failed
    step blocks the steps that need it, not the rest. `log_name`: the run's log under root;
    `command`: how the lock's error names the runner; `show_output`: children's output
    (progress bars) also goes to our stdout; `keep_dir`: where each finished step is kept."""
    journal = _Journal(Path(root), log_name, echo, show_output, keep_dir)
    states: dict[str, str] = {}
    with root_lock(journal.root, command, log_name):
        to_run = _steps_to_run(journal.root, steps, only)
        for step in steps:
            if step.name not in to_run:
                states[step.name] = step_state(journal.root, step)
                continue
            blocked = [n for n in step.needs if states.get(n) != "done"]
            if blocked:
                states[step.name] = "blocked"
                journal.log(f"blocked {step.name}: needs {', '.join(blocked)}")
            else:
                states[step.name] = _run_step(journal, step, rebuild=to_run[step.name])
    return states


def _steps_to_run(root: Path, steps: list[Step], only: str | None) -> dict[str, str]:
    """name -> why, for every step to run: not done (and chosen by `only`), or done with its
    output gone (weights left on an earlier machine) and needed by a step to run."""
    to_run: dict[str, str] = {}
    for step in reversed(steps):  # a step's needs come before it
        state, whole = _state(root, step)
        if state != "done":
            if not only or only in step.name:
                to_run[step.name] = ""
        elif not whole and (needers := [s.name for s in steps if s.name in to_run and step.name in s.needs]):
            to_run[step.name] = f"{', '.join(needers)} need its output, which is gone"
    return to_run


def step_state(root: Path, step: Step) -> str:
    """done | running | failed | pending, from the step's record and its output."""
    return _state(root, step)[0]


def _state(root: Path, step: Step) -> tuple[str, bool]:
    """The step's state, and whether its output is whole (a done step's may be only kept)."""
    record = read_record(root, step.name)
    if record is None:
        return "pending", False
    if record.get("status") == "running":  # or cut short: by a stop, or a session's end that took its runner
        alive = _grid_is_running(root) and _process_alive(record.get("pid"))
        return ("running" if alive else "pending"), False
    if record.get("status") == STARTED:
        return "pending", False
    if record.get("status") != "done":
        return "failed", False
    try:
        if step.command is not None and _akd_args(step) not in (record.get("command"), record.get(REVISED)):
            return "pending", False  # the command changed (e.g. another template was chosen)
    except ExperimentError:
        return "pending", False  # its command depends on a step that is not done
    if step.verify():
        return "done", True
    return ("done" if step.kept is not None and step.kept() else "pending"), False


def carry_over(root: Path, before: list[Step], after: list[Step], revision: str) -> list[str]:
    """After a revision of the settings: every step begun under the settings `before` (a record,
    or an output an earlier machine kept) whose command the revision changes keeps the command it
    began with: a finished one stays done, an unfinished one finishes as it began (an evaluation's
    saved answers are refused under other settings). Its record notes the command the revised
    settings give it. Returns the names of the steps carried over."""
    earlier = {step.name: step for step in before}
    carried = []
    for step in after:
        prior = earlier.get(step.name)
        record = read_record(root, step.name)
        if step.command is None or prior is None or prior.command is None or (
                record is None and not Path(step.output).exists()):
            continue
        try:
            new, old = _akd_args(step), (record or {}).get("command") or _akd_args(prior)
        except ExperimentError:
            continue  # its command waits for a step not done: it has not begun
        if new == old:
            continue
        record = record or {"name": step.name, "kind": step.kind, "output": str(step.output), "command": old,
                            "status": STARTED}
        _write_record(root, {**record, REVISED: new, "revision": revision})
        carried.append(step.name)
    return carried


def read_record(root: Path, name: str) -> dict | None:
    path = root / "steps" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


class _Journal:
    """Where a run writes: its root, its log file, the echo of each log line."""

    def __init__(self, root: Path, log_name: str, echo, show_output: bool, keep_dir: Path | None = None):
        self.root, self.log_name, self.echo, self.show_output = root, log_name, echo, show_output
        self.keep_dir = keep_dir

    def log(self, message: str) -> None:
        log_line(self.root, self.echo, message, self.log_name)

    def keep(self, step: Step) -> None:
        """The finished step's record and small outputs into the keep folder."""
        if self.keep_dir is None:
            return
        try:
            keep(self.root, self.keep_dir, kept_paths(self.root, step))
            forget_partial_answers(self.root, self.keep_dir, step.output)
        except KeepError as exc:
            self.log(f"{step.name}: {exc}")


def _run_step(journal: _Journal, step: Step, rebuild: str = "") -> str:
    root = journal.root
    if rebuild:  # a done step whose output is gone: what is left of it goes, then it runs again
        journal.log(f"rebuild {step.name}: {rebuild}")
        _remove(step.output)
    args = _akd_args(step) if step.command else None
    earlier = read_record(root, step.name) or {}
    carried = {}
    if args is not None and earlier.get(REVISED) == args:  # begun before a revision: it finishes as it began
        carried = {key: earlier[key] for key in (REVISED, "revision")}
        args = earlier["command"]
    record = {"name": step.name, "kind": step.kind, "output": str(step.output), "command": args, **carried,
              "status": "running", "started": _now(), "pid": os.getpid(), "machine": machine_facts()}
    _write_record(root, record)
    journal.log(f"start {step.name}" + (f": akd {' '.join(args)}" if args else "")
                + (f" (begun before settings revision {carried['revision']}: as it began)" if carried else ""))
    started = time.perf_counter()
    if args is None:
        try:
            step.action()
            code, peak = 0, None
        except Exception as exc:  # recorded and logged; the grid goes on with other steps
            journal.log(f"{step.name}: {type(exc).__name__}: {exc}")
            code, peak = 1, None
    else:
        show = {"show": True} if journal.show_output else {}
        code, peak = _run_command(args, root / "logs" / f"{step.name}.log", **show)
    ok = code == 0 and step.verify()
    if ok:
        for path in step.disposable:
            shutil.rmtree(path, ignore_errors=True)
    record.update(status="done" if ok else "failed", returncode=code, finished=_now(),
                  wall_s=round(time.perf_counter() - started, 1), peak_rss_gib=peak)
    _write_record(root, record)
    if ok:
        journal.keep(step)
    how = f"{record['wall_s']:.0f} s" + (f", peak {peak:.1f} GiB" if peak else "")
    journal.log(f"{'done' if ok else 'FAILED'} {step.name} ({how})"
                + ("" if ok else f"; see {root / 'logs' / (step.name + '.log')}"))
    return "done" if ok else "failed"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _run_command(args: list[str], log_path: Path, show: bool = False) -> tuple[int, float]:
    """`akd ARGS` in a child process that dies with us; returns its exit code and the peak
    resident memory of its process tree (sampled each second, GiB). `show`: its output
    (progress bars included) goes to our stdout as well as to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {_now()} akd {' '.join(args)}\n".encode())
        log.flush()
        child = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args],
                                 stdout=subprocess.PIPE if show else log,
                                 stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        peak = _PeakMemory(child.pid)
        if show:
            _copy_output(child.stdout, log)
        code = child.wait()
        peak.stop()
    return code, round(peak.gib, 2)


def _copy_output(source, log) -> None:
    """Child output to the log and our stdout as it comes (a bar's carriage-return updates
    included); a closed stdout stops the echo, never the child."""
    out = getattr(sys.stdout, "buffer", None)
    while chunk := os.read(source.fileno(), 65536):
        log.write(chunk)
        log.flush()
        try:
            if out is not None:
                out.write(chunk)
                out.flush()
        except (OSError, ValueError):
            out = None
    source.close()


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
def root_lock(root: Path, command: str = "akd experiment run", log_name: str = LOG_FILE):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentError(f"another `{command}` is working on {root} "
                                  f"(see {root / log_name})") from None
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


def _process_alive(pid) -> bool:
    """Whether the runner that wrote a record still runs (a record without a pid: assume so)."""
    import psutil

    return pid is None or psutil.pid_exists(pid)


def _write_record(root: Path, record: dict) -> None:
    path = root / "steps" / f"{record['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)


def log_line(root: Path, echo, message: str, log_name: str = LOG_FILE) -> None:
    line = f"{_now()} {message}"
    with open(root / log_name, "a") as log:
        log.write(line + "\n")
    echo(line)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
