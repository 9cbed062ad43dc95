"""The search space of a split: chunk count and ratios, as Optuna parameters, as an exhaustive
grid, and a fast local search over any cost function. Pure Python.

A split is drawn as `chunks` = k, then stick-breaking cuts cut_i in [0, 1] for i = 1..k-1 over
the tokens left after every chunk got its `align` tokens: chunk i takes `align` plus the fraction
cut_i of the free tokens the chunks before it left over, the last chunk the rest. So every draw
is a valid, aligned split (no sliver below the alignment, no wasted draw), k never exceeds
S / align, and each parameter keeps one meaning whatever the others are, which suits TPE.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations, pairwise

from isotune.core.chunking import chunk_bounds
from isotune.core.errors import BadInput

GRID_STEP = 0.05
SPACE_VERSION = 2  # what the parameters mean; a study drawn with another meaning is not resumed


def ratios_from_cuts(cuts: list[float]) -> list[float]:
    ratios, left = [], 1.0
    for c in cuts:
        ratios.append(left * c)
        left -= left * c
    return ratios + [left]


def cuts_from_ratios(ratios: list[float]) -> list[float]:
    cuts, left = [], 1.0
    for r in ratios[:-1]:
        cuts.append(min(1.0, max(0.0, r / left)) if left > 1e-12 else 0.0)
        left -= r
    return cuts


def max_chunks_for(seq_len: int, max_chunks: int, align: int) -> int:
    """The most chunks a split of seq_len tokens can have: each needs `align` tokens."""
    return max(1, min(max_chunks, seq_len // align))


def suggest_bounds(trial, seq_len: int, max_chunks: int, align: int) -> list[int]:
    """Draw (or replay, for enqueued trials) a split's boundaries from an Optuna trial."""
    k = trial.suggest_int("chunks", 1, max_chunks_for(seq_len, max_chunks, align))
    return bounds_from_cuts(seq_len, [trial.suggest_float(f"cut{i}", 0.0, 1.0) for i in range(1, k)], align)


def bounds_from_cuts(seq_len: int, cuts: list[float], align: int) -> list[int]:
    """Boundaries [0, ..., S] of the split the cuts draw: every chunk gets `align` tokens, the
    cuts share out the rest; inner boundaries are multiples of `align`. Rounding keeps every
    chunk at >= align tokens: round(x + align) = round(x) + align, and the cap that leaves the
    later chunks their tokens grows by exactly `align` per boundary too."""
    k = len(cuts) + 1
    free = seq_len - k * align
    bounds, acc = [0], 0.0
    for j, share in enumerate(ratios_from_cuts(cuts)[:-1], start=1):
        acc += align + share * free
        cap = (seq_len - (k - j) * align) // align * align
        bounds.append(min(round(acc / align) * align, cap))
    return bounds + [seq_len]


def params_for(bounds: list[int], align: int) -> dict:
    """Optuna params that replay the split `bounds` exactly (for enqueue_trial)."""
    k, free = len(bounds) - 1, bounds[-1] - (len(bounds) - 1) * align
    shares = [(b - a - align) / free if free > 0 else 0.0 for a, b in pairwise(bounds)]
    return {"chunks": k} | {f"cut{i}": c for i, c in enumerate(cuts_from_ratios(shares), start=1)}


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
