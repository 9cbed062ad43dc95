"""The search space of a split: chunk count and ratios, as Optuna parameters, as an exhaustive
grid, and a fast local search over any cost function. Pure Python.

Ratios are stick-breaking draws: `chunks` = k, then cut_i in (0, 1) for i = 1..k-1, where chunk
i takes the fraction cut_i of what the chunks before it left over and the last chunk takes the
rest. Every draw is a valid split (positive, sums to 1), and each parameter keeps one meaning
whatever the others are, which suits TPE.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations, pairwise

from isotune.core.chunking import chunk_bounds
from isotune.core.errors import BadInput

CUT_LOW, CUT_HIGH = 0.01, 0.99
GRID_STEP = 0.05


def ratios_from_cuts(cuts: list[float]) -> list[float]:
    ratios, left = [], 1.0
    for c in cuts:
        ratios.append(left * c)
        left -= left * c
    return ratios + [left]


def cuts_from_ratios(ratios: list[float]) -> list[float]:
    cuts, left = [], 1.0
    for r in ratios[:-1]:
        cuts.append(min(CUT_HIGH, max(CUT_LOW, r / left)))
        left -= r
    return cuts


def suggest_ratios(trial, max_chunks: int) -> list[float]:
    """Draw (or replay, for enqueued trials) a split from an Optuna trial."""
    k = trial.suggest_int("chunks", 1, max_chunks)
    return ratios_from_cuts([trial.suggest_float(f"cut{i}", CUT_LOW, CUT_HIGH) for i in range(1, k)])


def params_for(bounds: list[int]) -> dict:
    """Optuna params that replay the split `bounds` exactly (for enqueue_trial)."""
    s = bounds[-1]
    ratios = [(b - a) / s for a, b in pairwise(bounds)]
    return {"chunks": len(ratios)} | {f"cut{i}": c for i, c in enumerate(cuts_from_ratios(ratios), start=1)}


def ratios_of(bounds: list[int]) -> list[float]:
    s = bounds[-1]
    return [round((b - a) / s, 6) for a, b in pairwise(bounds)]


def try_bounds(seq_len: int, ratios: list[float], align: int) -> list[int] | None:
    """Boundaries of a split, or None where a chunk would fall below the alignment."""
    try:
        return chunk_bounds(seq_len, ratios, align)
    except BadInput:
        return None


def grid(seq_len: int, max_chunks: int, align: int, step: float = GRID_STEP) -> list[list[int]]:
    """Every distinct split with k <= max_chunks and ratios on a `step` grid, as boundaries
    (ratio points that round to the same aligned boundaries count once)."""
    units = round(1 / step)
    seen: dict[tuple[int, ...], None] = {}
    for k in range(1, max_chunks + 1):
        for cuts in combinations(range(1, units), k - 1):  # compositions of `units` into k parts
            parts = [b - a for a, b in pairwise((0, *cuts, units))]
            b = try_bounds(seq_len, [p / units for p in parts], align)
            if b is not None:
                seen.setdefault(tuple(b), None)
    return [list(b) for b in seen]


def local_best(cost: Callable[[list[int]], float], seq_len: int, max_chunks: int, align: int) -> list[int]:
    """Boundaries minimising `cost` by coordinate descent per chunk count: from the even split,
    move each inner boundary by +-step while it helps, halving the step down to `align`."""
    best, best_t = [0, seq_len], cost([0, seq_len])
    for k in range(2, max_chunks + 1):
        b = try_bounds(seq_len, [1 / k] * k, align)
        if b is None:
            break
        t = cost(b)
        step = align
        while step * 2 <= seq_len // (2 * k):
            step *= 2
        while step >= align:
            improved = True
            while improved:
                improved = False
                for i in range(1, k):
                    for d in (-step, step):
                        nb = b[:i] + [b[i] + d] + b[i + 1 :]
                        if nb[i] - nb[i - 1] >= align and nb[i + 1] - nb[i] >= align and (nt := cost(nb)) < t - 1e-9:
                            b, t, improved = nb, nt, True
            step //= 2
        if t < best_t:
            best, best_t = b, t
    return best
