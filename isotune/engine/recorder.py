"""True op intervals of one traced prefill (for `run --trace` and `--timeline`), and the
recorder that does nothing when no trace was asked for."""

from __future__ import annotations

import math
import time

import torch

from isotune.core.schedule import COMM, Op


class Recorder:
    """True op intervals of one prefill, in ms from its start.

    CPU: compute from perf_counter around each op; an all-reduce from its issue to the moment the
    backend completes it (a done-callback on the work's future, run by gloo's thread), not to the
    later wait. CUDA: CUDA events; compute on the current stream, an all-reduce from an event
    after its issue to an event on a side stream made to wait for it (the side stream is
    otherwise idle, so the event fires when NCCL finishes)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: dict[tuple[int, str], object] = {}
        if self.cuda:
            self.side = torch.cuda.Stream(device)
            self.t0 = self._now()
        else:
            self.t0 = time.perf_counter()

    def _now(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def start(self, i: int) -> None:
        self.marks[i, "start"] = self._now()

    def end(self, i: int) -> None:
        self.marks[i, "end"] = self._now()

    def comm(self, i: int, handle) -> None:
        """All-reduce i was issued (its start marked just before): arrange to learn its end."""
        if handle is None:  # one rank, or comm skipped: nothing flies
            self.marks[i, "end"] = self.marks[i, "start"]
        elif self.cuda:
            with torch.cuda.stream(self.side):
                handle.wait()
                ev = torch.cuda.Event(enable_timing=True)
                ev.record(self.side)
            self.marks[i, "end"] = ev
        elif hasattr(handle, "on_delivered"):  # held to an emulated link: it ends when the link delivers it
            handle.on_delivered(lambda when, i=i: self.marks.__setitem__((i, "end"), when))
        else:
            handle.get_future().add_done_callback(
                lambda _f, i=i: self.marks.__setitem__((i, "end"), time.perf_counter())
            )

    def landed(self, i: int) -> None:
        """The wait for all-reduce i returned: it ended by now (a done-callback may run later)."""
        if not self.cuda:
            self.marks[i, "waited"] = time.perf_counter()

    def events(self, ops: list[Op]) -> list[dict]:
        if self.cuda:
            torch.cuda.synchronize()
        deadline = time.perf_counter() + 5.0  # gloo may run a callback just after wait() returned
        while any((i, "end") not in self.marks for i in range(len(ops))) and time.perf_counter() < deadline:
            time.sleep(0.001)
        out = []
        for i, op in enumerate(ops):
            a = self.marks[i, "start"]
            if self.cuda:
                b = self.marks[i, "end"]
            else:  # the earlier of completion and the wait's return
                b = min(self.marks.get((i, k), math.inf) for k in ("end", "waited"))
                b = a if b == math.inf else b
            if self.cuda:
                s, e = self.t0.elapsed_time(a), self.t0.elapsed_time(b)
            else:
                s, e = (a - self.t0) * 1e3, (b - self.t0) * 1e3
            out.append(
                {"name": op.name, "kind": op.kind, "stage": op.stage, "layer": op.layer, "chunk": op.chunk}
                | {"start_ms": s, "end_ms": e}
            )
        return queued_comms(out)


def queued_comms(events: list[dict]) -> list[dict]:
    """All-reduces run one after another on the comm lane (NCCL's stream, gloo's thread), so one
    issued while its predecessor still runs waits in the queue: it starts at max(issue, the
    previous one's end), not at its issue, or the lane would show two at once. In place; returns
    `events`."""
    lane_free = -math.inf
    for ev in events:  # in issue order
        if ev["kind"] == COMM:
            ev["start_ms"] = min(max(ev["start_ms"], lane_free), ev["end_ms"])
            lane_free = max(lane_free, ev["end_ms"])
    return events


class _NoRecorder:
    """Stands in for a Recorder when no trace is asked for: the prefill loop stays one loop."""

    def start(self, i: int) -> None: ...

    def end(self, i: int) -> None: ...

    def comm(self, i: int, handle) -> None: ...

    def landed(self, i: int) -> None: ...


NO_RECORDER = _NoRecorder()
