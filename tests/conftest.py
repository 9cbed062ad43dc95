import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / "cli.py")

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python cli.py ARGS` in a subprocess, as a user would run it."""
    # a colour-forcing environment would make rich treat the pipe as a terminal: escape codes in
    # the text the tests read and in the widths they check
    inherited = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    full_env = {**inherited, **(env or {})}
    return subprocess.run(
        [sys.executable, CLI, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
    )


@pytest.fixture
def cli():
    return run_cli
