"""The cost model: simulate the executor's op list on a Profile. Pure Python.

One compute lane and one comm lane, each running its ops in list order (the executor computes
in order; collectives run in issue order on one stream/thread). An op starts when its lane is
free and its deps have ended. A compute op slows by the profile's compute_slowdown for the part
of it that overlaps an all-reduce in flight. The comm lane keeps the link's token bucket: idle
time refills it (at the link rate, up to burst_mb) and each all-reduce spends from it.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

from isotune.core.profile import Profile
from isotune.core.schedule import ATTN, COMM, Op, build_schedule


def _overlap(s: float, e: float, intervals: list[tuple[float, float]]) -> float:
    """Time in [s, e] covered by `intervals` (sorted, disjoint: the comm lane is FIFO)."""
    total = 0.0
    for a, b in reversed(intervals):
        if b <= s:
            break
        total += max(0.0, min(e, b) - max(s, a))
    return total


@lru_cache(maxsize=256)
def _schedule(layers: int, chunks: int) -> tuple[Op, ...]:
    return tuple(build_schedule(layers, chunks))


def simulate(profile: Profile, bounds: list[int], layers: int | None = None, ops: list[Op] | None = None) -> float:
    """Predicted prefill ms for chunk `bounds` ([0, ..., S]) over `layers` layers."""
    fit = profile.fit
    layers = layers or int(profile.model["layers"])
    ops = ops or _schedule(layers, len(bounds) - 1)
    sizes = [b - a for a, b in pairwise(bounds)]
    # per-chunk op costs are the same in every layer
    attn_ms = [fit.attn_ms(q, p) for q, p in zip(sizes, bounds, strict=False)]
    mlp_ms = [fit.mlp_ms(q) for q in sizes]
    comm_mb = [q * profile.hidden * profile.dtype_bytes / 1e6 for q in sizes]
    scale = fit.comm_scale  # an all-reduce inside a prefill vs one timed alone
    comm_ms = [fit.allreduce_ms(int(mb * 1e6)) * scale for mb in comm_mb]
    burst, refill = fit.burst_mb, 1.0 / fit.ms_per_mb if fit.ms_per_mb > 0 else 0.0
    tokens = burst  # the link was idle before the prefill
    slow = fit.compute_slowdown
    begin, end = [0.0] * len(ops), [0.0] * len(ops)
    compute_free = comm_free = 0.0
    comms: list[tuple[float, float]] = []
    skew = fit.sync_skew
    for i, op in enumerate(ops):
        ready = max((end[d] for d in op.deps), default=0.0)
        if op.kind == COMM:  # the slower rank reaches it later by a share of its producer's time
            producer = op.deps[0]
            start = max(comm_free, ready + skew * (end[producer] - begin[producer]))
            if burst:
                tokens = min(burst, tokens + (start - comm_free) * refill)
                mb = comm_mb[op.chunk]
                dur = fit.allreduce_ms(int(mb * 1e6), tokens) * scale
                tokens -= min(mb, tokens)
            else:
                dur = comm_ms[op.chunk]
            end[i] = comm_free = start + dur
            comms.append((start, comm_free))
            continue
        dur = attn_ms[op.chunk] if op.stage == ATTN else mlp_ms[op.chunk]
        start = max(compute_free, ready)
        stretch = 0.0
        if slow:  # the slowdown applies to the overlapped part; a second pass catches most of the stretch
            stretch = slow * _overlap(start, start + dur, comms)
            stretch = slow * _overlap(start, start + dur + stretch, comms)
        begin[i] = start
        end[i] = compute_free = start + dur + stretch
    return max(end)


def predict_serial(profile: Profile, seq_len: int, layers: int | None = None) -> tuple[float, float]:
    """(compute-only ms, comm-only ms) of the unsplit forward, with the all-reduces costed as
    `simulate` costs them inside a prefill."""
    fit = profile.fit
    layers = layers or int(profile.model["layers"])
    compute = layers * (fit.attn_ms(seq_len, 0) + fit.mlp_ms(seq_len))
    comm = layers * 2 * fit.allreduce_ms(seq_len * profile.hidden * profile.dtype_bytes) * fit.comm_scale
    return compute, comm
