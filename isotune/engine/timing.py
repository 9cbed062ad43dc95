"""The timing protocol of whole prefills that search, bench and run share: warm-up, then repeats
with every variant interleaved in a shuffled order, a barrier before each prefill, the slowest
rank's time per repeat, summarised by `core.stats.typical` (which the profile's op timings use
too)."""

from __future__ import annotations

import random
import time
from itertools import pairwise

import torch

from isotune.core.pack import Seq
from isotune.core.schedule import build_schedule
from isotune.core.stats import typical
from isotune.engine import dist
from isotune.engine.executor import FULL, prefill
from isotune.engine.model import TPModel
from isotune.engine.rank import DistInfo


def device_ms(fn, device: torch.device, calls: int = 1) -> float:
    """ms per call of `fn`, called `calls` times back to back (the caller synchronised before).
    On CUDA the interval is between CUDA events on the current stream, so the host's sync stays
    out of it (it would dominate small shapes; on an idle stream the first launch's latency is
    still in, and back-to-back calls spread it); an NCCL
    all-reduce that fn waits for is inside it, since its wait makes this stream wait. On CPU the
    work is synchronous and perf_counter is the truth."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) * 1e3 / calls


def host_issue_ms(fn, device: torch.device, repeats: int = 5) -> float:
    """The host's ms to issue `fn` onto an empty queue, the least of `repeats` tries: its
    launches, which the GPU waits on wherever it runs ahead of the host. (Timed inside a long
    prefill it would not be: once CUDA's launch queue fills, every launch waits for the GPU and
    the host's time grows to the GPU's.) On CPU the op runs as it is issued: its whole time."""
    best = float("inf")
    for _ in range(repeats):
        dist.synchronize(device)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    dist.synchronize(device)
    return best * 1e3


_SPIN_CYCLES_PER_MS: dict[int, float] = {}  # CUDA device index -> cycles of torch.cuda._sleep per ms


def spin_cycles_per_ms(device: torch.device) -> float:
    """Clock cycles per ms of `torch.cuda._sleep` (a kernel that spins on the SM's cycle counter)
    on `device`, measured once: how long a hold of the stream lasts. The count is in SM clock
    cycles, so the GPU is first kept busy long enough to leave its idle clocks, and the fastest
    of three 10 ms spins is kept: a calibration at idle clocks would make later holds short."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SPIN_CYCLES_PER_MS:
        with torch.cuda.device(index):
            torch.cuda._sleep(1000)  # load the kernel: the calibration times the spin alone
            torch.cuda.synchronize()
            rough = 1e6 / device_ms(lambda: torch.cuda._sleep(1_000_000), device)
            torch.cuda._sleep(int(50 * rough))  # ~50 ms busy: the clocks ramp up
            tries = [device_ms(lambda: torch.cuda._sleep(int(10 * rough)), device) for _ in range(3)]
            _SPIN_CYCLES_PER_MS[index] = int(10 * rough) / min(tries)
    return _SPIN_CYCLES_PER_MS[index]


MAX_HOLD_MS = 250.0  # a hold that long not covering the issue means the host is blocked, not slow


def issue_and_run_ms(fn, device: torch.device, repeats: int = 3) -> tuple[float, float | None]:
    """(host ms to issue fn, GPU ms to run what it issued), each the least of `repeats` tries.

    Events around an unheld call time whichever is slower: where the host issues kernels slower
    than the GPU runs them, the GPU waits between kernels and the events measure the host's pace
    (on an H200, layer 0 of llama3-8b in 8 chunks of 128 tokens showed 4.1 ms between its events
    while its kernels take a fraction of that). So the stream is first held by a spin kernel that
    outlasts the host's issue: every kernel is queued before the GPU reaches the first, and the
    events time the GPU alone. A try counts only where the hold was still running when the host
    had issued everything (its start event not yet reached); the GPU ms is None where no hold
    covered it (a launch queue too short for fn's kernels blocks the host). On CPU, fn runs as
    it is issued: both are its time."""
    if device.type != "cuda":
        t = host_issue_ms(fn, device, repeats)
        return t, t
    host = host_issue_ms(fn, device, repeats)
    hold_ms, gpu = min(MAX_HOLD_MS, 2 * host + 1.0), []
    for _ in range(2 * repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        dist.synchronize(device)
        torch.cuda._sleep(int(hold_ms * spin_cycles_per_ms(device)))
        start.record()
        fn()
        covered = not start.query()  # the hold still runs: nothing of fn has started yet
        end.record()
        end.synchronize()
        if covered:
            gpu.append(start.elapsed_time(end))
            if len(gpu) == repeats:
                break
        elif hold_ms >= MAX_HOLD_MS:
            break
        else:
            hold_ms = min(MAX_HOLD_MS, 4 * hold_ms)
    return host, min(gpu) if gpu else None


def kernels_issued(fn, device: torch.device) -> int | None:
    """How many kernels (and device copies) one call of fn puts on the GPU, from torch.profiler's
    CUDA activity: what the host's issue time is spent on. None on CPU, which launches none.
    Count after timing, not between timings: once a profiler run with CUDA activity has run,
    CUPTI stays attached (unless TEARDOWN_CUPTI=1) and slows later launches (pytorch#144455).
    Compiled code's user-scope ranges show as device events too; they are no kernels."""
    if device.type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA and not e.is_user_annotation)


def run_layer0(model: TPModel, x: torch.Tensor, bounds: list[int]) -> None:
    """Layer 0's compute on x (S, hidden) split at `bounds`: each chunk's attention, then its MLP,
    no all-reduce, the outputs dropped: what the timing probes issue. The cache rows it writes are
    rewritten by the next prefill before they are read."""
    for a, z in pairwise(bounds):
        model.attn(0, x[a:z], a)
        model.mlp(0, x[a:z])


def layer_issue_ms(model: TPModel, x: torch.Tensor) -> tuple[float, float]:
    """(attention, MLP): the host's ms to issue layer 0's two ops on a chunk x (T, hidden),
    each onto an empty queue (host_issue_ms). Layer 0's cache rows it writes are rewritten by
    the next prefill before they are read."""
    attn = host_issue_ms(lambda: model.attn(0, x, 0), model.device)
    return attn, host_issue_ms(lambda: model.mlp(0, x), model.device)


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
    traces: dict[str, list[list[dict]]] | None = None,
    pack: list[Seq] | None = None,
) -> dict[str, float]:
    """Typical prefill ms per variant (name -> bounds, or (bounds, mode)). Variants are
    interleaved repeat by repeat, in a shuffled order, to cancel drift and order effects; each
    repeat starts at a barrier and counts the slowest rank's time. `samples`, when given,
    receives those per-repeat times; `cpu` the typical CPU ms (user + kernel) that the process's
    other threads burned per variant, slowest rank per repeat: on CPU ranks that is the
    communication's cost (gloo's copies, sockets and sums) to the cores the compute runs on. The
    calling thread is left out: its wait for an all-reduce may spin, and in a full run it would
    be computing instead. `traces`, when given, receives this rank's op events (see Recorder) of
    every timed repeat per variant: the ops as they ran inside real prefills. `pack`: `ids` are
    several prompts packed (core.pack), each variant's bounds cutting the packed stream."""
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
            dist.synchronize(info.device)
            c0, t0 = _background_cpu(), time.perf_counter()
            events: list[dict] | None = [] if traces is not None and rep >= warmup else None
            prefill(model, ids, bounds, schedules[name], mode=mode, trace=events, pack=pack)
            dist.synchronize(info.device)
            if rep >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
                cpu_times[name].append((_background_cpu() - c0) * 1e3)
                if events is not None:
                    traces.setdefault(name, []).append(events)
    slowest = {name: dist.max_across(ts, info.device) for name, ts in times.items()}
    if samples is not None:
        samples.update(slowest)
    if cpu is not None:
        cpu.update({name: typical(dist.max_across(ts, info.device)) for name, ts in cpu_times.items()})
    return {name: typical(ts) for name, ts in slowest.items()}
