"""The shaped-link testbed (benchmarks/netns.py), where this machine can build one (root and
iproute2; elsewhere each test says why it skips): ranks in namespaces of their own, the link
shaped to the asked rate, isotune's ranks meeting across it as under any launcher, and nothing
left behind."""

import importlib.util
import subprocess
import sys

import pytest
from conftest import CLI, ROOT

spec = importlib.util.spec_from_file_location("netns", ROOT / "benchmarks" / "netns.py")
netns = importlib.util.module_from_spec(spec)
spec.loader.exec_module(netns)

WHY = netns.can_run()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"the testbed {WHY}")

PROBE = (
    "import json, os, subprocess; "
    "links = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout; "
    "qdisc = subprocess.run(['tc', 'qdisc', 'show', 'dev', 'eth0'], capture_output=True, text=True).stdout; "
    "print(json.dumps({'rank': os.environ['RANK'], 'links': links, 'qdisc': qdisc}))"
)


def _ours() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("isonet")]


def test_each_rank_has_its_own_shaped_link_and_nothing_is_left(tmp_path, capfd):
    before = _ours()
    assert (
        netns.main(["--ranks", "2", "--rate", "500mbit", "--logs", str(tmp_path), "--", sys.executable, "-c", PROBE])
        == 0
    )
    import json

    rank0 = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    rank1 = json.loads((tmp_path / "rank1.log").read_text().strip().splitlines()[-1])
    for seen, rank in ((rank0, "0"), (rank1, "1")):
        assert seen["rank"] == rank
        names = {line.split(":")[1].strip().split("@")[0] for line in seen["links"].splitlines()}
        assert names == {"lo", "eth0"}  # a namespace of its own: no other host's interfaces
        assert "tbf" in seen["qdisc"] and "500Mbit" in seen["qdisc"]
    assert _ours() == before  # torn down


def test_isotune_ranks_meet_across_it_as_hosts_apart(tmp_path):
    out = tmp_path / "run.json"
    cmd = [sys.executable, CLI, "run", "--model", "tiny", "--seq-len", "64", "--repeats", "1", "--json", str(out)]
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "netns.py"), "--ranks", "2", "--rate", "1gbit", "--", *cmd],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "tp 2 gloo" in r.stdout and out.is_file()


def test_a_failing_rank_is_said_with_where_its_peers_output_went(tmp_path, capfd):
    code = netns.main(["--ranks", "2", "--rate", "1gbit", "--logs", str(tmp_path), "--", sys.executable, "-c",
                       "import os, sys; sys.exit(int(os.environ['RANK']) * 3)"])  # fmt: skip
    assert code == 3 and f"the other ranks' output: {tmp_path}" in capfd.readouterr().err
