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


@pytest.fixture
def cli_here(capsys, monkeypatch):
    """`isotune ARGS` in this process, as the CompletedProcess `cli` returns: for what needs no
    ranks of its own (bad input, the cost model, show, a tp 1 run), without a fresh interpreter
    per call. A tp 1 rank runs here and sets torch's thread count; the caller gets it back."""
    import torch

    from isotune.cli import main

    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # as run_cli: plain text, 100 columns
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()  # what the test printed before is not this command's
        threads = torch.get_num_threads()
        try:
            code = main(list(args))
        finally:
            torch.set_num_threads(threads)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run
