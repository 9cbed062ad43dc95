"""Dead ranks: a rank SIGKILLed in the middle of a prefill, a profile or a search (spawned ranks,
and under torchrun). Every other process must exit non-zero within 60 s with a message naming
the failed rank, and no process of the command may outlive it.

"In the middle" is observed, not slept for: the kill waits for a marker that only the work
itself produces (bytes the ranks' all-reduces wrote to their sockets, or a finished trial in the
search's journal), so on a slow machine it cannot land during start-up instead."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import CLI, ROOT
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

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


def _socket_bytes(pid: int) -> int:
    """Bytes the process has written (wchar counts socket sends: gloo's all-reduce traffic)."""
    try:
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    return next(int(line.split()[1]) for line in io.splitlines() if line.startswith("wchar:"))


def all_reduced(mb: float) -> Callable[[list[int]], bool]:
    """Marker: some rank has sent `mb` MB, i.e. all-reduces of real size are under way."""
    return lambda ranks: max(_socket_bytes(r) for r in ranks) >= mb * 1e6


def finished_trial(journal: Path) -> Callable[[list[int]], bool]:
    """Marker: the search's journal holds a completed trial."""

    def marker(_ranks: list[int]) -> bool:
        if not journal.exists():
            return False
        storage = JournalStorage(JournalFileBackend(str(journal)))
        return any(
            t.state == TrialState.COMPLETE
            for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
            for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
        )

    return marker


def _kill_rank_1_and_check(
    cmd: list[str], marker: Callable[[list[int]], bool], needle: str, env: dict | None = None
) -> None:
    p = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )  # fmt: skip
    try:
        ranks = _ranks(p.pid, 2)
        deadline = time.monotonic() + 180
        while not marker(ranks) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker(ranks), "the work never reached the marker"
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
# one prefill of SMALL at 1024 tokens all-reduces 2 layers x 2 x (1024 tokens x 1024 hidden x 2 bytes)
ONE_PREFILL_MB = 2 * 2 * 1024 * 1024 * 2 / 1e6
RUN = ["run", *SMALL, "--seq-len", "1024", "--repeats", "500"]
PROFILE = ["profile", *SMALL, "--seq-lens", "1024,2048", "--repeats", "4", "-o", "{tmp}/p.yaml"]
SEARCH = ["search", *SMALL, "--seq-lens", "1024", "--trials", "200", "-o", "{tmp}/plan.yaml"]
# what shows each command is mid-work: a whole prefill's all-reduces sent (the warm-up is done);
# the profile's all-reduce measurements under way (it times compute before them); a trial finished
MARKERS = {
    "prefill": (RUN, lambda tmp: all_reduced(ONE_PREFILL_MB)),
    "profile": (PROFILE, lambda tmp: all_reduced(1.0)),
    "search": (SEARCH, lambda tmp: finished_trial(tmp / "plan.study.log")),
}


@pytest.mark.parametrize("what", MARKERS)
def test_rank_killed_mid_work(tmp_path, what):
    args, marker = MARKERS[what]
    cmd = [sys.executable, CLI, *[a.format(tmp=tmp_path) for a in args], "--tp", "2"]
    _kill_rank_1_and_check(cmd, marker(tmp_path), "rank 1 was killed by SIGKILL")
    assert not list(tmp_path.glob("*.yaml"))  # no half-written profile or plan


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun comes with torch; missing means a broken env")
@pytest.mark.parametrize("what", MARKERS)
def test_rank_killed_under_torchrun(tmp_path, what):
    args, marker = MARKERS[what]
    cmd = ["torchrun", "--standalone", "--nproc-per-node", "2", CLI, *[a.format(tmp=tmp_path) for a in args]]
    # torchrun's agent notices the dead worker, stops the other and names the failed rank
    _kill_rank_1_and_check(cmd, marker(tmp_path), "rank: 1", env={"OMP_NUM_THREADS": "1"})
    assert not list(tmp_path.glob("*.yaml"))
