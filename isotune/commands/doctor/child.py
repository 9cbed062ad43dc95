"""A child command of `isotune doctor` (the cuda tests, a pipeline command) under a time limit,
stopped with its whole process group when it runs past it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BEGIN_S = 1.0  # under doctor's --time-limit, a check or child is begun only with this much time left


def _timeout_s() -> float:
    return float(os.environ.get("ISOTUNE_DOCTOR_STEP_S", "600"))


@dataclass
class Ran:
    returncode: int | None  # None: stopped at the time limit
    stdout: str
    stderr: str
    stopped: str = ""  # why it was stopped, when it was
    cut: bool = False  # stopped (or never started) because doctor's --time-limit ran out


def run_child(cmd: list[str], cwd: Path | None, deadline: float | None = None) -> Ran:
    """A child command under a time limit (ISOTUNE_DOCTOR_STEP_S, 600 s; less where doctor's
    `deadline`, a time.monotonic() value, comes first): a hung GPU test or rank must not take the
    rest of the report with it. The child leads its own process group, so its spawned ranks are
    stopped with it: at the limit, and when doctor itself is interrupted."""
    limit = step = _timeout_s()
    if deadline is not None:
        limit = min(step, deadline - time.monotonic())
        if limit < BEGIN_S:
            return Ran(None, "", "", "not begun: doctor's --time-limit ran out", cut=True)
    p = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = p.communicate(timeout=limit)
        return Ran(p.returncode, out, err)
    except subprocess.TimeoutExpired:
        _kill_group(p.pid)
        try:  # a process stuck in a GPU driver outlives SIGKILL and keeps the pipes open
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        why = (
            f"stopped after {limit:g} s (ISOTUNE_DOCTOR_STEP_S): hung, or too slow here"
            if limit == step
            else f"stopped after {limit:.{0 if limit >= 10 else 1}f} s, when doctor's --time-limit ran out"
        )
        return Ran(None, out, f"{err}\n{why}", why, cut=limit < step)
    except BaseException:  # Ctrl-C or a kill of doctor: its own session would leave the ranks running
        _kill_group(p.pid)
        raise


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
