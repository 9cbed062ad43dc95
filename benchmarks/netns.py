"""A shaped link on one machine, as a launcher: each rank in a network namespace of its own, the
namespaces joined through a bridge by veth pairs whose every end is shaped with tc (a token
bucket at the rate; netem's delay too where asked), then COMMAND started once per rank with the launcher environment
isotune reads (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK=0, LOCAL_WORLD_SIZE=1).
Everything it made is removed when the command ends, however it ends. Needs root and iproute2;
it is the real link an emulated one (--link) is validated against.

    python3 benchmarks/netns.py --ranks 2 --rate 1gbit [--delay 0.1ms] -- isotune bench --model small ...

Rank 0's output is shown; the other ranks' goes to --logs (a temporary folder by default, named
when a rank fails). The exit status is the first non-zero rank's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

RATE_UNITS = ("gbit", "mbit", "kbit")


def rate_bytes_per_s(rate: str) -> float:
    """'1gbit' -> 1.25e8."""
    for unit, bits in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * bits / 8
    raise ValueError(rate)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def can_run() -> str | None:
    """Why this machine cannot build the testbed, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and tc)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2 (ip, tc): apt-get install iproute2"
    return None


class Testbed:
    """`ranks` namespaces on one shaped bridge, named after this process so that two testbeds
    (two test runs) never meet."""

    def __init__(self, ranks: int, rate: str, delay: str | None = None):
        self.ranks, self.rate, self.delay = ranks, rate, delay
        tag = os.getpid() % 100000
        self.names = [f"isonet{tag}-r{i}" for i in range(ranks)]
        self.switch = f"isonet{tag}-sw"
        self.subnet = f"10.{200 + tag % 50}.{tag % 250}"  # inside these namespaces only
        self.made: list[str] = []

    def address(self, rank: int) -> str:
        return f"{self.subnet}.{rank + 1}"

    def _shape(self, ns: str, dev: str) -> None:
        """A token bucket at the rate whose bucket is as small as tc keeps exact (4 ms of the rate:
        a link that sat idle sends that much at once, as a shaped switch port does); netem's
        delay on top where one is asked (its kernel module must be there)."""
        tc = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev]
        burst = max(16_000, int(rate_bytes_per_s(self.rate) * 0.004))
        if self.delay:
            sh(*tc, "root", "handle", "1:", "netem", "delay", self.delay)
            sh(*tc, "parent", "1:1", "handle", "10:", "tbf", "rate", self.rate, "burst", str(burst), "latency", "100ms")
        else:
            sh(*tc, "root", "tbf", "rate", self.rate, "burst", str(burst), "latency", "100ms")

    def __enter__(self) -> Testbed:
        try:
            sh("ip", "netns", "add", self.switch)
            self.made.append(self.switch)
            sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, ns in enumerate(self.names):
                sh("ip", "netns", "add", ns)
                self.made.append(ns)
                host, port = f"{ns[-12:]}h", f"{ns[-12:]}p"  # interface names: 15 characters at most
                sh("ip", "link", "add", host, "type", "veth", "peer", "name", port)
                sh("ip", "link", "set", host, "netns", ns)
                sh("ip", "link", "set", port, "netns", self.switch)
                sh("ip", "-n", ns, "link", "set", host, "name", "eth0")
                sh("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                for dev in ("lo", "eth0"):
                    sh("ip", "-n", ns, "link", "set", dev, "up")
                sh("ip", "-n", self.switch, "link", "set", port, "master", "br0")
                sh("ip", "-n", self.switch, "link", "set", port, "up")
                self._shape(ns, "eth0")  # rank -> switch
                self._shape(self.switch, port)  # switch -> rank
        except subprocess.CalledProcessError as e:
            self.__exit__()
            raise SystemExit(f"netns: {' '.join(e.cmd)} failed: {e.stderr.strip()}") from None
        return self

    def __exit__(self, *exc) -> None:
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)  # its veth ends go with it
        self.made.clear()

    def run(self, command: list[str], logs: Path, port: int = 29577) -> int:
        """COMMAND once per rank; the first non-zero exit, or 0."""
        procs = []
        for i, ns in enumerate(self.names):
            env = {
                "RANK": str(i),
                "WORLD_SIZE": str(self.ranks),
                "LOCAL_RANK": "0",
                "LOCAL_WORLD_SIZE": "1",
                "MASTER_ADDR": self.address(0),
                "MASTER_PORT": str(port),
                "GLOO_SOCKET_IFNAME": "eth0",
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            }
            out = None if i == 0 else open(logs / f"rank{i}.log", "w")  # noqa: SIM115 - closed below
            cmd = ["ip", "netns", "exec", ns, "env", *[f"{k}={v}" for k, v in env.items()], *command]
            procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None), out))
        try:
            codes = [p.wait() for p, _ in procs]
        finally:
            for p, out in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait()
                if out:
                    out.close()
        return next((c for c in codes if c), 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ranks", type=int, default=2, help="ranks, one namespace each (2..16)")
    ap.add_argument("--rate", required=True, help="each link's rate, as tc takes it: 1gbit, 500mbit")
    ap.add_argument("--delay", help="one-way delay added on each link end, as tc takes it: 0.1ms")
    ap.add_argument("--logs", help="folder for ranks 1.. output (default: a temporary one)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...: what each rank runs")
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("give the command to run after --")
    if not 2 <= a.ranks <= 16:
        ap.error("--ranks must be 2..16")
    if not any(a.rate.endswith(u) for u in RATE_UNITS):
        ap.error(f"--rate {a.rate!r}: give a tc rate such as 1gbit or 500mbit")
    why = can_run()
    if why:
        print(f"netns: {why}", file=sys.stderr)
        return 2
    logs = Path(a.logs or tempfile.mkdtemp(prefix="netns-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    with Testbed(a.ranks, a.rate, a.delay) as bed:
        code = bed.run(command, logs)
    if code:
        print(f"netns: a rank exited {code}; the other ranks' output: {logs}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
