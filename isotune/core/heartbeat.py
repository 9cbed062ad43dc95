"""A heartbeat: beat(n) for n = 1, 2, ... every period from a thread of its own, so that others
can tell a live worker that is busy from one that died. Used where a rank waits for its peers
(engine.rendezvous) and where a search worker measures a trial (tune.studies)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Flatline(Exception):
    """Raised by a beat when there is nothing left to beat for: the beating ends."""


class Heartbeat:
    def __init__(self, beat: Callable[[int], None], period_s: float):
        self.beat, self.period_s = beat, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beating, daemon=True)

    def _beating(self) -> None:
        n = 1
        while not self._stop.wait(self.period_s):
            try:
                self.beat(n)
                n += 1
            except Flatline:
                return
            except Exception:  # a hiccup (a locked database, a dropped connection): the next beat may land
                continue

    @property
    def beating(self) -> bool:
        """Whether its thread still runs (stopped, flatlined or never started: not)."""
        return self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the beating to end by itself (a flatline), up to `timeout_s`."""
        self._thread.join(timeout_s)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self, join_s: float | None = None) -> None:
        """Stop beating, and wait for the thread (up to `join_s`): a beat left in flight as the
        interpreter exits, or after its subject is done, must not land."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(join_s)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
