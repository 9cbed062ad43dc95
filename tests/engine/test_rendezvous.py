"""Ranks under a bare launcher (benchmarks/netns.py's kind: the torchrun environment, nobody watching the
ranks): they meet after loading, so a slow loader does not time its peers out; a rank that dies
while loading is named by its peers in one line within seconds, not after the join timeout; one
that dies later leaves its peers one line, not gloo's message."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from isotune.engine import dist  # first: isotune quiets torch's C++ log before torch loads
    import torch

    def worker(info, how):
        if how["what"] == "mid":  # killed between collectives, after the group was made
            for i in range(200):
                t = torch.ones(3)
                dist.all_reduce_async(t).wait()
                if i == 1 and info.rank == int(how["rank"]):
                    os.kill(os.getpid(), 9)
                time.sleep(0.02)
            return 0
        if info.rank == int(how["rank"]):
            if how["what"] == "slow":
                time.sleep(float(how["s"]))  # loading a big model: longer than a collective may wait
            else:
                time.sleep(float(how["s"]))
                peer = 1 - info.rank
                while info.rendezvous.store.add(f"isotune/beat/{peer}", 0) == 0:
                    time.sleep(0.05)  # the peer reached the store (else it waits to connect, not to meet)
                os.kill(os.getpid(), 9)  # killed while loading (the OOM killer, a user's kill -9)
        t = torch.ones(3)
        dist.all_reduce_async(t).wait()
        assert t.tolist() == [2.0, 2.0, 2.0]
        return 0

    rank, what, s = sys.argv[1:4]
    sys.exit(dist.run_ranks(worker, dist.Ranks(tp=2), {"rank": rank, "what": what, "s": s}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bare_launch(tmp_path, rank: str, what: str, s: float, **env) -> list[tuple[int, str, float]]:
    """Start 2 ranks as benchmarks/netns.py does; (exit code, stderr, seconds to exit) per rank."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs, t0 = [], time.monotonic()
    for r in range(2):
        e = os.environ | env | {"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
        e |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), rank, what, str(s)], env=e, stderr=subprocess.PIPE, text=True
            )
        )
    out = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        out.append((p.returncode, err, time.monotonic() - t0))
    return out


def test_a_slow_loading_rank_does_not_time_its_peers_out(tmp_path):
    (a, _, _), (b, err, _) = _bare_launch(tmp_path, "1", "slow", 8.0, ISOTUNE_DIST_TIMEOUT="4")
    assert (a, b) == (0, 0), err


@pytest.mark.parametrize("dead", ["1", "0"])
def test_a_rank_killed_while_loading_is_named_by_its_peer_in_one_line(tmp_path, dead):
    """Rank 1 dies: rank 0 sees its beat stop. Rank 0 dies: with it goes the store it served."""
    ranks = _bare_launch(tmp_path, dead, "kill", 1.0, ISOTUNE_BEAT_S="0.1", ISOTUNE_DIST_TIMEOUT="60")
    code, err, took = ranks[1 - int(dead)]
    assert ranks[int(dead)][0] == -signal.SIGKILL
    assert code == 1 and took < 30, (code, took)  # the join timeout (900 s) would be the wait without the beat
    lines = err.strip().splitlines()
    prefix = "[rank 1] error: " if dead == "0" else "error: "
    want = "rank 1 stopped before every rank was ready" if dead == "1" else "the launcher's store"
    assert len(lines) == 1 and lines[0].startswith(prefix + want), err


def test_a_rank_killed_between_collectives_leaves_its_peer_one_line(tmp_path):
    (code, err, took), (dead, _, _) = _bare_launch(tmp_path, "1", "mid", 0.0, ISOTUNE_DIST_TIMEOUT="60")
    assert dead == -signal.SIGKILL and code == 1 and took < 30
    assert err.strip().splitlines() == [
        "error: a peer rank stopped during a collective (its connection closed): its own output says why"
    ], err


def test_a_restarted_launch_does_not_count_the_last_attempts_ranks(monkeypatch):
    """torchrun keeps one store across a run's restarts: keys are per run and attempt, so the
    first attempt's check-ins and beats (left in the store) do not let a rank of the second
    attempt through before its peer, nor make a peer that has not started look alive."""
    from datetime import timedelta

    import torch.distributed as tdist

    from isotune.engine.launcher import launcher_store
    from isotune.engine.rendezvous import PeerGone, Rendezvous

    server = tdist.TCPStore("127.0.0.1", 0, None, True, timeout=timedelta(seconds=10), wait_for_workers=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(server.port))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")  # the agent (here: this test) serves it
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "r1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = launcher_store(0)
    server.add(f"{first.prefix}joined", 2)  # attempt 0 got as far as meeting, then failed
    server.add(f"{first.prefix}beat/1", 7)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    again = launcher_store(0)
    assert again.prefix != first.prefix and not again.serve
    rv = Rendezvous(again, 0, 2, connect_s=1.0, join_s=30.0)
    with pytest.raises(PeerGone, match="rank 1 did not start within"):
        rv.meet()  # waits for this attempt's rank 1, which never comes


def test_gloo_connection_lines_are_kept_off_stdout_on_the_torch_releases_that_print_them(capfd, monkeypatch):
    """torch 2.9 and 2.10 write "[Gloo] Rank 0 is connected to ..." from C++ to stdout while a
    group connects, into `run`'s answer: that file descriptor goes to /dev/null meanwhile, and
    comes back after; on other releases and backends nothing is touched."""
    import os

    import torch

    from isotune.core.versions import minor
    from isotune.engine import group

    assert minor("2.10.0a0+git12") == (2, 10) and minor("2.13.0+cpu") == (2, 13) and minor("3") == (3, 0)
    for version, backend, shown in (("2.10.0", "gloo", False), ("2.9.1+cu128", "gloo", False),
                                    ("2.11.0+cu130", "gloo", True), ("2.10.0", "nccl", True)):  # fmt: skip
        monkeypatch.setattr(torch, "__version__", version)
        with group._quiet_gloo(backend):
            os.write(1, b"[Gloo] Rank 0 is connected to 1 peer ranks\n")  # as the C++ side writes it
        os.write(1, b"the answer\n")
        out = capfd.readouterr().out
        assert ("[Gloo]" in out) == shown and out.endswith("the answer\n"), (version, backend, out)
