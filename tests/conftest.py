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
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, CLI, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
    )


@pytest.fixture
def cli():
    return run_cli
