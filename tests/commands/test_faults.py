"""Dead ranks: a rank SIGKILLed in the middle of a prefill, a profile or a search (spawned ranks,
and under torchrun). Every other process must exit non-zero within 60 s with a message naming
the failed rank, and no process of the command may outlive it.

"In the middle" is observed, not slept for: the kill waits for a marker that only the work
itself produces (bytes the ranks' all-reduces wrote to their sockets, or a finished trial in the
search's journal), so on a slow machine it cannot land during start-up instead."""

import json
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
from fixtures.tiny_text import tiny_text_checkpoint
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
    cmd: list[str], marker: Callable[[list[int]], bool], needle: str, env: dict | None = None, stdout=None
) -> str:
    p = subprocess.Popen(
        cmd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
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
        return err
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


SMALL = ["--model", "small", "--layers", "2", "--dtype", "bfloat16"]
# one prefill of SMALL at 1024 tokens all-reduces 2 layers x 2 x (1024 tokens x 1024 hidden x 2 bytes)
ONE_PREFILL_MB = 2 * 2 * 1024 * 1024 * 2 / 1e6
RUN = ["run", *SMALL, "--seq-len", "1024", "--chunks", "2", "--repeats", "500"]
PROFILE = ["profile", *SMALL, "--seq-lens", "256,512", "--repeats", "2", "-o", "{tmp}/p.yaml"]
SEARCH = ["search", *SMALL, "--seq-lens", "1024", "--trials", "200", "-o", "{tmp}/plan.yaml"]
# what shows each command is mid-work: a whole prefill's all-reduces sent (the warm-up is done);
# the profile's all-reduce measurements under way (it times compute before them); a trial finished
MARKERS = {
    "prefill": (RUN, lambda tmp: all_reduced(ONE_PREFILL_MB)),
    "profile": (PROFILE, lambda tmp: all_reduced(0.5)),
    "search": (SEARCH, lambda tmp: finished_trial(tmp / "plan.study.log")),
}


@pytest.mark.parametrize("what", MARKERS)
def test_rank_killed_mid_work(tmp_path, what):
    args, marker = MARKERS[what]
    cmd = [sys.executable, CLI, *[a.format(tmp=tmp_path) for a in args], "--tp", "2"]
    err = _kill_rank_1_and_check(cmd, marker(tmp_path), "rank 1 was killed by SIGKILL")
    assert not list(tmp_path.glob("*.yaml"))  # no half-written profile or plan
    # the surviving rank's socket errors are echoes of the kill: not a word of them is printed
    assert "Traceback" not in err and "Connection closed" not in err and "gloo" not in err.lower(), err
    assert [line for line in err.splitlines() if "error" in line.lower()] == [
        "error: rank 1 was killed by SIGKILL; the other ranks were stopped"
    ], err
    if what != "search":  # the search also prints its progress on stderr
        assert err.strip().count("\n") == 0, err


def test_rank_killed_mid_batch_leaves_the_finished_prompts_on_stdout(tmp_path):
    """Continuous batching (--max-seqs) at tp 2: rank 1 is killed once two prompts have ended.
    The run stops with the one line; the JSON lines of the prompts that ended before it are on
    stdout, whole; the --json document, which needs every prompt, is not written at all."""
    model = tiny_text_checkpoint(tmp_path / "tiny")
    words = "The river town was founded by families who travelled west in search of farmland".split()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": " ".join(words[: 4 + i % 10])}) + "\n" for i in range(40)))
    out, doc = tmp_path / "stdout.jsonl", tmp_path / "answers.json"

    def two_prompts_ended(_ranks: list[int]) -> bool:
        return out.exists() and out.read_text().count("\n") >= 2

    cmd = [
        sys.executable, CLI, "run", "--model", str(model), "--dtype", "float32", "--tp", "2",
        "--prompts", str(prompts), "--max-seqs", "4", "--max-new-tokens", "400", "--json", str(doc),
    ]  # fmt: skip
    with out.open("w") as stdout:
        err = _kill_rank_1_and_check(cmd, two_prompts_ended, "rank 1 was killed by SIGKILL", stdout=stdout)
    assert [line for line in err.splitlines() if "error" in line.lower()] == [
        "error: rank 1 was killed by SIGKILL; the other ranks were stopped"
    ], err
    assert "Traceback" not in err, err
    ended = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole
    assert 2 <= len(ended) < 40, len(ended)
    print(f"{len(ended)} of 40 prompts ended before the kill; stderr:\n{err}")
    assert all(x["generated_ids"] and x["generated_text"] is not None for x in ended)
    assert len({x["index"] for x in ended}) == len(ended)
    assert not doc.exists() and not list(tmp_path.glob("answers.json*"))


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun comes with torch; missing means a broken env")
@pytest.mark.parametrize("what", ["prefill", "search"])  # the profile's ranks die as the prefill's do
def test_rank_killed_under_torchrun(tmp_path, what):
    args, marker = MARKERS[what]
    cmd = ["torchrun", "--standalone", "--nproc-per-node", "2", CLI, *[a.format(tmp=tmp_path) for a in args]]
    # torchrun's agent notices the dead worker, stops the other and names the failed rank
    _kill_rank_1_and_check(cmd, marker(tmp_path), "rank: 1", env={"OMP_NUM_THREADS": "1"})
    assert not list(tmp_path.glob("*.yaml"))


def _memory_cgroup(limit_bytes: int) -> Path | None:
    """A fresh memory cgroup (v1 or v2) limited to `limit_bytes`, or None where this process may
    not make one (not root, no cgroup file system)."""
    name = f"isotune-test-{os.getpid()}"
    for base, limit_files in (
        (Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")),
        (Path("/sys/fs/cgroup"), ("memory.max", "memory.swap.max")),
    ):
        if not (base / limit_files[0]).exists() and not (base / "cgroup.controllers").exists():
            continue
        try:
            cg = base / name
            cg.mkdir()
            (cg / limit_files[0]).write_text(str(limit_bytes))
            if (cg / limit_files[1]).exists():  # no swapping out of trouble
                (cg / limit_files[1]).write_text(str(limit_bytes) if "memsw" in limit_files[1] else "0")
            return cg
        except OSError:
            continue
    return None


def test_rank_killed_by_the_oom_killer_is_named_as_such():
    """A rank the kernel's OOM killer takes (here: a memory cgroup of 1.5 GiB around a run of 4
    llama2-7b layers in float32 at tp 2, ~2.6 GiB per rank, with the refusal switched off) is
    named as such, in one line."""
    cg = _memory_cgroup(int(1.5 * 1024**3))
    if cg is None:
        pytest.skip("cannot create a memory cgroup here (needs root and a cgroup file system)")
    try:
        run = [sys.executable, CLI, "run", "--model", "llama2-7b", "--layers", "4", "--tp", "2"]
        run += ["--seq-len", "64", "--chunks", "2", "--dtype", "float32", "--repeats", "1"]
        r = subprocess.run(
            ["sh", "-c", f'echo $$ > {cg / "cgroup.procs"} && exec "$@"', "sh", *run],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
            env={**os.environ, "ISOTUNE_MEMORY_CHECK": "0"},
        )  # fmt: skip
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert r.stderr.strip().count("\n") == 0, r.stderr
        assert "killed by the kernel's out-of-memory killer (SIGKILL)" in r.stderr, r.stderr
        assert "--layers" in r.stderr  # and what to do about it
    finally:
        for _ in range(50):  # the cgroup can be removed once its processes are gone
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
