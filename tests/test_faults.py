"""Dead ranks: a rank SIGKILLed in the middle of a prefill, a profile or a search (spawned ranks),
and of a prefill under torchrun. Every other process must exit non-zero within 60 s with a
message naming the failed rank, and no process of the command may outlive it."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, ROOT

LIMIT_S = 60


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # ppid
            out.append(int(stat.parent.name))
    return out


def _tree(pid: int) -> list[int]:
    kids = _children(pid)
    return kids + [g for k in kids for g in _tree(k)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ranks(root: int, n: int, timeout: float = 120) -> list[int]:
    """The n rank processes under `root`, oldest first (rank 0 starts first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks = [p for p in _tree(root) if "spawn_main" in _cmdline(p) or "cli.py" in _cmdline(p)]
        ranks = [p for p in ranks if "resource_tracker" not in _cmdline(p) and p != root]
        if len(ranks) >= n:
            return sorted(ranks)[:n]
        time.sleep(0.2)
    raise AssertionError("the ranks never started")


def _kill_rank_1_and_check(cmd: list[str], warm_s: float, needle: str, env: dict | None = None) -> None:
    p = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )  # fmt: skip
    try:
        ranks = _ranks(p.pid, 2)
        time.sleep(warm_s)  # let the ranks get into the work
        assert p.poll() is None, p.stderr.read()
        everyone = _tree(p.pid)
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.monotonic()
        code = p.wait(LIMIT_S)
        took = time.monotonic() - t0
        err = p.stderr.read()
        assert code != 0 and took < LIMIT_S, (code, took)
        print(f"\n{' '.join(cmd[:6])}...: exit {code} {took:.1f} s after the kill")
        assert needle in err, err
        time.sleep(1.0)
        assert [q for q in everyone if _alive(q)] == [], "orphans left behind"
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


SMALL = ["--model", "small", "--layers", "2", "--dtype", "bfloat16"]


def test_rank_killed_during_prefill():
    cmd = [sys.executable, CLI, "run", *SMALL, "--tp", "2", "--seq-len", "1024", "--repeats", "500"]
    _kill_rank_1_and_check(cmd, 3.0, "rank 1 was killed by SIGKILL")


def test_rank_killed_during_profile(tmp_path):
    cmd = [sys.executable, CLI, "profile", *SMALL, "--tp", "2", "--seq-lens", "1024,2048", "--repeats", "20",
           "-o", str(tmp_path / "p.yaml")]  # fmt: skip
    _kill_rank_1_and_check(cmd, 3.0, "rank 1 was killed by SIGKILL")
    assert not (tmp_path / "p.yaml").exists()


def test_rank_killed_during_search(tmp_path):
    cmd = [sys.executable, CLI, "search", *SMALL, "--tp", "2", "--seq-lens", "1024", "--trials", "200",
           "-o", str(tmp_path / "plan.yaml")]  # fmt: skip
    _kill_rank_1_and_check(cmd, 4.0, "rank 1 was killed by SIGKILL")
    assert not (tmp_path / "plan.yaml").exists()


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun comes with torch; missing means a broken env")
@pytest.mark.parametrize(
    "args",
    [
        ["run", *SMALL, "--seq-len", "1024", "--repeats", "500"],
        ["profile", *SMALL, "--seq-lens", "1024,2048", "--repeats", "20", "-o", "{tmp}/p.yaml"],
        ["search", *SMALL, "--seq-lens", "1024", "--trials", "200", "-o", "{tmp}/plan.yaml"],
    ],
    ids=["prefill", "profile", "search"],
)
def test_rank_killed_under_torchrun(tmp_path, args):
    cmd = ["torchrun", "--standalone", "--nproc-per-node", "2", CLI, *[a.format(tmp=tmp_path) for a in args]]
    # torchrun's agent notices the dead worker, stops the other and names the failed rank
    _kill_rank_1_and_check(cmd, 4.0, "rank: 1", env={"OMP_NUM_THREADS": "1"})
    assert not list(tmp_path.glob("*.yaml"))
