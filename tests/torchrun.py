"""Running a script under torchrun for the multi-process tests, so that a failure says why.

torchrun's own summary names only the rank that died and the signal; the reason is in that
rank's last lines (a Python traceback, a C++ "terminate called ...", faulthandler's stack on an
abort), which come before the summary and were cut off when a test showed only the output's
tail. A failed launch therefore reports the ranks' lines that precede the summary, last.

A rank killed by a signal (not one that raised) is told apart as `RankKilled`: in CI (stop 25,
torch 2.13, gloo on two shared cores) one rank of a two-process run aborted once while seven
local reruns of the same tests passed; a fixture may build its runs again, once, in a fresh
folder, and it warns with the killed run's lines when it does.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AGENT_LINE = re.compile(r"torch/distributed/(elastic|run\.py)|<frozen runpy>")  # the launcher's own lines
ROOT_CAUSE_SIGNAL = re.compile(r"Root Cause.*?exitcode\s*:\s*-\d+", re.DOTALL)  # the first rank to die


class RankFailed(AssertionError):
    """A rank exited with an error; the message ends with the ranks' own last lines."""


class RankKilled(RankFailed):
    """A rank was killed by a signal (SIGABRT, SIGSEGV, ...) rather than raising."""


def ranks_lines(stderr: str, keep: int = 60) -> str:
    """The last `keep` lines the ranks wrote before torchrun's failure summary."""
    lines = stderr.splitlines()
    end = next((i for i, line in enumerate(lines) if AGENT_LINE.search(line)), len(lines))
    return "\n".join(lines[max(0, end - keep):end])


def torchrun(script: Path, args: list[str], nproc: int, port_offset: int = 0) -> None:
    """Run `script args...` in `nproc` processes (or plainly, for one); raise RankFailed/RankKilled."""
    if nproc == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        port = 29500 + (os.getpid() + port_offset) % 1000
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(port), str(script), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1", "TORCH_SHOW_CPP_STACKTRACES": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode == 0:
        return
    summary = done.stderr[-700:]
    kind = RankKilled if ROOT_CAUSE_SIGNAL.search(done.stderr) else RankFailed
    raise kind(f"{' '.join(cmd[:6])} ... exited {done.returncode}\n--- torchrun's summary (end) ---\n"
               f"{summary}\n--- the ranks' last lines before it ---\n{ranks_lines(done.stderr)}")


def build_twice_if_killed(build, make_root):
    """build(make_root()); if a rank was killed by a signal, warn with its lines and build once
    more in a fresh root. Anything else (an exception, wrong numbers) fails at once."""
    try:
        return build(make_root())
    except RankKilled as killed:
        warnings.warn(f"a torchrun rank was killed by a signal; building the runs again once:\n{killed}",
                      stacklevel=2)
        return build(make_root())

