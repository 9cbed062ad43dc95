"""An emulated link on one rank (`--link`, core.link): each all-reduce still runs for real, and
its completion is held until the emulated link would have delivered it.

One transfer at a time, as on a real link: an all-reduce issued while the previous one is still
in flight starts when that one is delivered, so a burst of small chunks pays as it would. The
hold never ends before the real all-reduce does (the real transport's time stands where it is
the slower), and it sleeps, so on CPU ranks the wait leaves the compute its cores. On GPUs the
hold must be a kernel on the comm stream that occupies the collective's CTAs; until it exists,
GPU ranks refuse --link (engine.target).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from isotune.core.link import GPU_HOLD_CTAS, Link
from isotune.engine import comm_hold


class Held:
    """An all-reduce in flight on an emulated link: wait() returns once the real one is done
    and the emulated one delivered."""

    def __init__(self, handle, finish_s: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.handle, self.finish_s, self._clock, self._sleep = handle, finish_s, clock, sleep

    def wait(self) -> None:
        if self.handle is not None:
            self.handle.wait()  # never faster than the real transport
        left = self.finish_s - self._clock()
        if left > 0:
            self._sleep(left)

    def on_delivered(self, callback: Callable[[float], None]) -> None:
        """callback(when): once the real all-reduce is done, with the time the link delivered it
        (the later of the two), on this link's clock: what a trace shows as its end."""
        if self.handle is None:  # no peer (a stand-in): the link's time alone
            callback(self.finish_s)
        else:
            self.handle.get_future().add_done_callback(lambda _f: callback(max(self._clock(), self.finish_s)))


class EmulatedLink:
    """This rank's side of the link: when each transfer starts and is delivered."""

    def __init__(self, link: Link, clock: Callable[[], float] = time.perf_counter, sleep=time.sleep):
        self.link, self._clock, self._sleep = link, clock, sleep
        self.free_s = -float("inf")  # when the link finishes what it already carries

    def hold(self, handle, nbytes: int) -> Held:
        """Hold `handle` (an all-reduce of `nbytes` just issued, or None where no peer is real)
        until the link delivers it: it starts when issued or when the link comes free, the later."""
        start = max(self._clock(), self.free_s)
        self.free_s = start + self.link.allreduce_ms(nbytes) / 1e3
        return Held(handle, self.free_s, self._clock, self._sleep)


class HeldOnGpu:
    """A stand-in's all-reduce on a GPU: the hold kernel, queued on the comm stream."""

    def __init__(self, delivered: torch.cuda.Event):
        self.delivered = delivered

    def wait(self) -> None:
        """Make the current stream wait for the delivery (the host does not block), as waiting on
        an NCCL all-reduce does."""
        torch.cuda.current_stream().wait_event(self.delivered)


class GpuLink:
    """A GPU stand-in's side of the link: each all-reduce a hold kernel of the link's time on the
    comm stream, issued once the partial sum it stands for is computed."""

    def __init__(self, link: Link, device: torch.device, ctas: int | None):
        self.link, self.ctas = link, ctas or GPU_HOLD_CTAS
        # high priority, as ProcessGroupNCCL's stream: the hold starts as soon as SMs free, not after the queued compute
        self.stream = torch.cuda.Stream(device, priority=-1)
        comm_hold.hold(1000, self.ctas, self.stream)  # compiled now, not inside the first timed prefill
        self.stream.synchronize()

    def hold(self, handle, nbytes: int) -> HeldOnGpu:
        if handle is not None:  # the run's checks allow --link on GPUs only where no peer is real
            raise RuntimeError("a GPU link holds a stand-in's all-reduces; real GPU ranks use their interconnect")
        self.stream.wait_stream(torch.cuda.current_stream())  # the partial sum is ready: the transfer may start
        comm_hold.hold(round(self.link.allreduce_ms(nbytes) * 1e6), self.ctas, self.stream)
        delivered = torch.cuda.Event()
        delivered.record(self.stream)
        return HeldOnGpu(delivered)


def link_for(link: Link, device: torch.device, ctas: int | None = None) -> EmulatedLink | GpuLink:
    """This rank's side of `link`: slept through on CPU, a held kernel on a GPU."""
    return GpuLink(link, device, ctas) if device.type == "cuda" else EmulatedLink(link)
