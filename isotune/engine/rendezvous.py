"""Where ranks started by a launcher (torchrun, benchmarks/netns.py) meet: the launcher's store, reached as
each rank starts, and a heartbeat per rank until all have loaded their weights.

Ranks join their process group only after loading (a big model loads at its own speed per
rank), so the meeting may wait far longer than a collective would. Spawned ranks have a parent
that watches them; under a bare launcher nobody does, so a rank that dies while loading would
leave its peers waiting out the whole join timeout. Each rank therefore beats (a counter in the
store, from a thread with its own connection) from its start until the meeting, and a waiting
rank ends the wait, naming the peer, once that peer's beat stops.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch.distributed as tdist

from isotune.core.heartbeat import Heartbeat

BEAT_S = float(os.environ.get("ISOTUNE_BEAT_S", "2"))  # a rank's heartbeat period while it loads
# beats a peer may miss before it counts as gone: a thread that reads a checkpoint tensor may
# hold the GIL for seconds on a slow file system, and the join timeout is far longer anyway
SILENT_BEATS = 60
JOINED_POLL_S = 0.02  # how often a waiting rank looks whether all have checked in


def wait_for_all(store, key: str, world: int, join_s: float, look: Callable[[float], None] | None = None) -> None:
    """Check in under `key` and wait (up to join_s) until `world` ranks have: the process group's
    own connect then finds them all there, well within the collective timeout it uses.
    `look(now)`, when given, runs between polls and may end the wait by raising."""
    store.add(key, 1)
    start = time.monotonic()
    while store.add(key, 0) < world:
        now = time.monotonic()
        if look is not None:
            look(now)
        if now - start > join_s:
            raise TimeoutError(f"the other ranks did not get ready within {join_s:.0f} s (ISOTUNE_JOIN_TIMEOUT)")
        time.sleep(JOINED_POLL_S)


class PeerGone(RuntimeError):
    """A peer stopped before the meeting: the one line its waiting ranks print."""


@dataclass(frozen=True)
class StoreAddress:
    host: str
    port: int
    serve: bool  # this rank serves the store (rank 0, unless torchrun's agent already does)
    prefix: str  # this launch's keys: torchrun reuses its store across restarts of a run


def _client(at: StoreAddress, world: int, serve: bool, timeout_s: float):
    return tdist.TCPStore(
        at.host,
        at.port,
        world,
        serve,
        timeout=datetime.timedelta(seconds=timeout_s),
        wait_for_workers=False,
        multi_tenant=serve,  # torch's own env:// store is made so; a later group may share it
    )


class Rendezvous:
    """The launcher's store, connected as this rank starts; `meet` waits for every peer (up to
    `join_s`) and returns the store for the process group."""

    def __init__(self, at: StoreAddress, rank: int, world: int, connect_s: float, join_s: float):
        self.at, self.rank, self.world, self.connect_s, self.join_s = at, rank, world, connect_s, join_s
        try:
            self.store = _client(at, world, at.serve, connect_s)
            beat_store = _client(at, world, False, connect_s)  # a thread of its own, a socket of its own
        except tdist.DistError:
            raise PeerGone(
                f"could not reach the launcher's store at {at.host}:{at.port} within {connect_s:.0f} s: check "
                "MASTER_ADDR/MASTER_PORT and that rank 0 started (ISOTUNE_DIST_TIMEOUT sets the wait)"
            ) from None
        self._beat(beat_store)  # the first beat before start-up goes on: peers see this rank at once
        self._heart = Heartbeat(lambda n: self._beat(beat_store), BEAT_S).start()

    def _key(self, name: str) -> str:
        return f"{self.at.prefix}{name}"

    def _beat(self, store) -> None:
        store.add(self._key(f"beat/{self.rank}"), 1)

    def meet(self):
        """Check in and wait until all ranks have; raise PeerGone when a peer's beat stops (or
        never starts), TimeoutError after the join timeout. Returns the store."""
        store, start = self.store, time.monotonic()
        seen: dict[int, tuple[int, float]] = {}  # rank -> (its last beat count, when it changed)
        looked = [-math.inf]  # when the beats were last read

        def look(now: float) -> None:
            if now - looked[0] < BEAT_S / 2:  # beats change every BEAT_S: read them half as often
                return
            looked[0] = now
            for r in range(self.world):
                if r != self.rank:
                    self._check(r, store.add(self._key(f"beat/{r}"), 0), now, start, seen)

        try:
            wait_for_all(store, self._key("joined"), self.world, self.join_s, look)
        except tdist.DistError:  # the store's host (rank 0, or torchrun's agent) went away
            raise PeerGone(
                "the launcher's store (MASTER_ADDR:MASTER_PORT) went away before every rank was ready: "
                "rank 0 (or torchrun's agent) stopped; see its output"
            ) from None
        finally:
            self.close()
        return store

    def close(self) -> None:
        """Stop beating, and wait for the thread: one left inside a store call as the interpreter
        exits would be torn down mid-C++ and abort the process (SIGABRT, not our exit code)."""
        self._heart.stop(max(5.0, 2 * BEAT_S))  # a store call that hangs is cut off by its own timeout

    def _check(self, r: int, count: int, now: float, start: float, seen: dict) -> None:
        last = seen.get(r)
        if last is None or count != last[0]:
            seen[r] = (count, now)
            return
        if count == 0:  # it never reached the store: starting may be slow, allow the connect timeout
            if now - last[1] > self.connect_s:
                raise PeerGone(f"rank {r} did not start within {now - start:.0f} s: check that the launcher started it")
        elif now - last[1] > SILENT_BEATS * BEAT_S:
            raise PeerGone(f"rank {r} stopped before every rank was ready (crashed or killed?): see its output")
