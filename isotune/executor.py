"""Run an ISO op list on real ranks, and time it.

Compute ops run on the current stream in list order. A comm op issues
`all_reduce(async_op=True)` on the partial sum its producer left (NCCL runs it on its own
stream; gloo on its own thread) and nothing waits for it until a compute op that depends on it
starts: only then is the handle waited and the reduced sum added to that chunk's residual.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from itertools import pairwise

import torch

from isotune import dist
from isotune.dist import DistInfo
from isotune.model import TPModel
from isotune.schedule import ATTN, COMM, Op, build_schedule, final_comms

FULL, COMPUTE_ONLY, COMM_ONLY = "full", "compute", "comm"


@torch.inference_mode()
def prefill(
    model: TPModel,
    ids: torch.Tensor,
    bounds: list[int],
    ops: list[Op] | None = None,
    start_pos: int = 0,
    mode: str = FULL,
    trace: list[dict] | None = None,
) -> torch.Tensor:
    """Forward `ids` (S,) at positions start_pos.. through all layers, chunked at `bounds`
    (relative to the prompt, [0, ..., S]). Returns the final residual stream (S, hidden),
    before the final norm. Fills the KV cache for those positions.

    mode: FULL; COMPUTE_ONLY skips the all-reduces (wrong values, real compute time);
    COMM_ONLY skips the compute and all-reduces zero buffers of the real sizes.

    `trace`, when given, receives one event per op with its true start and end (see Recorder)."""
    if ops is None:
        ops = build_schedule(model.spec.layers, len(bounds) - 1)
    x = model.embed(ids)  # (S, hidden), replicated
    xs = [x[a:b] for a, b in pairwise(bounds)]  # views: chunk residuals
    partial: dict[int, torch.Tensor] = {}  # op index -> (T_c, hidden)
    handles: dict[int, object] = {}
    zeros: dict[tuple[str, int], torch.Tensor] = {}  # COMM_ONLY: one (T_c, hidden) buffer per stage+chunk

    rec = Recorder(model.device) if trace is not None else None

    def land(i: int) -> None:
        """Wait for comm op i and add its reduced sum to its chunk's residual."""
        h = handles.pop(i)
        if h is not None:
            h.wait()
            if rec:
                rec.landed(i)
        xs[ops[i].chunk].add_(partial.pop(i))

    for i, op in enumerate(ops):
        if op.kind == COMM:
            t = partial.pop(op.deps[0])
            partial[i] = t
            if rec:  # issued now: a backend may run much of it inside the call
                rec.start(i)
            handles[i] = None if mode == COMPUTE_ONLY else dist.all_reduce_async(t)
            if rec:
                rec.comm(i, handles[i])
            continue
        for d in op.deps:
            if ops[d].kind == COMM:
                land(d)
        if rec:
            rec.start(i)
        if mode == COMM_ONLY:
            key = (op.stage, op.chunk)
            if key not in zeros:
                zeros[key] = torch.zeros_like(xs[op.chunk])
            partial[i] = zeros[key]
        elif op.stage == ATTN:
            partial[i] = model.attn(op.layer, xs[op.chunk], start_pos + bounds[op.chunk])
        else:
            partial[i] = model.mlp(op.layer, xs[op.chunk])
        if rec:
            rec.end(i)
    for i in final_comms(ops):
        land(i)
    if rec:
        trace.extend(rec.events(ops))
    return x


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
        return out


def _background_cpu() -> float:
    """CPU seconds this process has burned outside the calling thread (gloo's threads on CPU)."""
    return time.process_time() - time.thread_time()


@torch.inference_mode()
def time_prefills(
    model: TPModel,
    info: DistInfo,
    ids: torch.Tensor,
    variants: dict[str, list[int] | tuple[list[int], str]],
    warmup: int = 1,
    repeats: int = 5,
    samples: dict[str, list[float]] | None = None,
    cpu: dict[str, float] | None = None,
) -> dict[str, float]:
    """Median prefill ms per variant (name -> bounds, or (bounds, mode)). Variants are
    interleaved repeat by repeat, in a shuffled order, to cancel drift and order effects; each
    repeat starts at a barrier and counts the slowest rank's time. `samples`, when given,
    receives those per-repeat times; `cpu` the median CPU ms (user + kernel) that the process's
    other threads burned per variant, slowest rank per repeat: on CPU ranks that is the
    communication's cost (gloo's copies, sockets and sums) to the cores the compute runs on. The
    calling thread is left out: its wait for an all-reduce may spin, and in a full run it would
    be computing instead."""
    runs = {name: v if isinstance(v, tuple) else (v, FULL) for name, v in variants.items()}
    schedules = {name: build_schedule(model.spec.layers, len(b) - 1) for name, (b, _) in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu_times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for rep in range(warmup + repeats):
        # a fresh order each repeat (the same on every rank: seeded by the repeat) so that no
        # variant always follows the one that drained the link's token bucket or the caches
        random.Random(rep).shuffle(order)
        for name in order:
            bounds, mode = runs[name]
            dist.barrier(info)
            dist.synchronize(info)
            c0, t0 = _background_cpu(), time.perf_counter()
            prefill(model, ids, bounds, schedules[name], mode=mode)
            dist.synchronize(info)
            if rep >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
                cpu_times[name].append((_background_cpu() - c0) * 1e3)
    slowest = {name: dist.max_across(ts, info) for name, ts in times.items()}
    if samples is not None:
        samples.update(slowest)
    if cpu is not None:
        cpu.update({name: statistics.median(dist.max_across(ts, info)) for name, ts in cpu_times.items()})
    return {name: statistics.median(ts) for name, ts in slowest.items()}
