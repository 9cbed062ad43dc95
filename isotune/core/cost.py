"""The cost model: simulate the executor's op list on a Profile. Pure Python.

One compute lane and one comm lane, each running its ops in list order (the executor computes
in order; collectives run in issue order on one stream/thread). An op starts when its lane is
free and its deps have ended. A compute op slows by the profile's compute_slowdown for the part
of it that overlaps an all-reduce in flight. The comm lane keeps the link's token bucket: idle
time refills it (at the link rate, up to burst_mb) and each all-reduce spends from it.

On GPUs a third lane, the host, issues the compute ops in list order, each taking the profile's
host ms (its kernel launches); an op cannot start before the host starts issuing it nor end
before the host has issued all of it. The host never waits for an all-reduce (NCCL's wait only
orders streams), so it runs ahead while the GPU is busy, and sets the pace where it is slower:
short chunks, many of them (launch-bound). Profiles from CPU ranks have no host lane.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

from isotune.core.pack import Piece, Seq, chunk_pieces
from isotune.core.profile import Profile
from isotune.core.schedule import ATTN, COMM, MLP, Op, build_schedule


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


def simulate(
    profile: Profile,
    bounds: list[int],
    layers: int | None = None,
    ops: list[Op] | None = None,
    pack: list[Seq] | None = None,
) -> float:
    """Predicted prefill ms for chunk `bounds` ([0, ..., S]) over `layers` layers; `pack`: the
    S tokens are several prompts (core.pack), whose attention is costed per sequence."""
    fit = profile.fit
    layers = layers or int(profile.model["layers"])
    ops = ops or _schedule(layers, len(bounds) - 1)
    sizes = [b - a for a, b in pairwise(bounds)]
    # per-chunk op costs are the same in every layer
    if pack is None:
        attn_ms = [fit.attn_ms(q, p) for q, p in zip(sizes, bounds, strict=False)]
    else:
        attn_ms = [_packed_attn_ms(fit, chunk) for chunk in chunk_pieces(pack, bounds)]
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
    host_ms = {ATTN: fit.host_attn_ms, MLP: fit.host_mlp_ms}
    host_free = 0.0  # when the host has issued every compute op so far
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
        issued_from, host_free = host_free, host_free + host_ms[op.stage]
        start = max(compute_free, ready, issued_from)
        stretch = 0.0
        if slow:  # the slowdown applies to the overlapped part; a second pass catches most of the stretch
            stretch = slow * _overlap(start, start + dur, comms)
            stretch = slow * _overlap(start, start + dur + stretch, comms)
        begin[i] = start
        end[i] = compute_free = max(start + dur + stretch, host_free)
    return max(end)


def _packed_attn_ms(fit, parts: list[Seq] | tuple[Piece, ...]) -> float:
    """Attention over packed rows: each sequence's (or piece's) queries over its own prefix only."""
    return sum(fit.attn_ms(p.tokens, p.start) for p in parts)


def predict_serial(
    profile: Profile, seq_len: int, layers: int | None = None, pack: list[Seq] | None = None
) -> tuple[float, float]:
    """(compute-only ms, comm-only ms) of the unsplit forward, with the all-reduces costed as
    `simulate` costs them inside a prefill (a pack's attention per sequence, as there)."""
    fit = profile.fit
    layers = layers or int(profile.model["layers"])
    attn = fit.attn_ms(seq_len, 0) if pack is None else _packed_attn_ms(fit, pack)
    compute = layers * (max(attn, fit.host_attn_ms) + max(fit.mlp_ms(seq_len), fit.host_mlp_ms))
    comm = layers * 2 * fit.allreduce_ms(seq_len * profile.hidden * profile.dtype_bytes) * fit.comm_scale
    return compute, comm


def host_lane_text(profile: Profile) -> str:
    """One line on the host lane: how long the host takes to issue a layer, and below what chunk
    size the GPU outruns it (chunks that short wait on launches, so a split that makes them
    pays twice)."""
    fit = profile.fit
    host = fit.host_attn_ms + fit.host_mlp_ms
    if host <= 0 and profile.source != "measured":
        return "none: launches assumed hidden (see the assumptions)"
    if host <= 0:
        return "none: on CPU ranks the host's time is the compute itself"
    head = f"{fit.host_attn_ms:.3g} + {fit.host_mlp_ms:.3g} ms to issue a layer (attention + MLP)"
    if fit.gpu_layer_table == []:  # measured, but no hold outlasted the host's issue at any size
        return f"{head}: no verdict (the GPU's own time could not be separated at any size)"
    if fit.gpu_layer_table:  # the GPU's own time: the in-context tables show the host's pace where it is slower
        sizes = [int(t) for t, _ in fit.gpu_layer_table]
        gpu_bound = next((int(t) for t, ms in fit.gpu_layer_table if ms >= host), None)
    else:
        sizes = sorted({int(t) for t, _ in fit.mlp_table or []} | {int(q) for q, *_ in fit.attn_table or []})
        gpu_bound = next((t for t in sizes if fit.attn_ms(t, 0) + fit.mlp_ms(t) >= host), None)
        head += " (against in-context times, which show the host's pace where it is slower: re-profile)"
    if gpu_bound is None:
        return f"{head}: launch-bound at every measured size (try --compile)"
    if gpu_bound == sizes[0]:
        return f"{head}: the GPU takes longer at every measured size, so launches stay hidden"
    return f"{head}: chunks under {gpu_bound} tokens wait on the host (launch-bound; try --compile)"
