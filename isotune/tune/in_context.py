"""Op costs measured where they run: inside real prefills, from the executor's own op intervals.

An op timed alone (warm caches, one at a time) is not the op a prefill runs back to back: on
this project's 2-core machines the isolated profile missed the baseline by up to 28%. So the
profile times compute-only prefills of the whole model, split the way a search will try (even
2, 4 and 8 chunks, 1/4 : 3/4 and back), and reads every attention and MLP op's interval from
the trace; then it times whole prefills (baseline and ISO 50/50) and fits what isolated op timings
cannot see (how far the ranks drift apart, what an all-reduce costs inside a prefill), keeping
those prefills as the profile's own check of its predictions.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import torch

from isotune.core.cost import simulate
from isotune.core.profile import Profile
from isotune.core.space import try_bounds
from isotune.core.stats import typical
from isotune.engine import dist
from isotune.engine.executor import COMPUTE_ONLY
from isotune.engine.model import TPModel
from isotune.engine.rank import DistInfo
from isotune.engine.timing import time_prefills

SHAPES = ([0.5, 0.5], [0.25] * 4, [0.125] * 8, [0.25, 0.75], [0.75, 0.25])  # besides the unsplit prefill


def shape_splits(s: int, align: int) -> list[list[int]]:
    """The unsplit prefill and the SHAPES that fit s tokens at this alignment."""
    out = [[0, s]]
    for ratios in SHAPES:
        b = try_bounds(s, ratios, align)
        if b is not None and b not in out:
            out.append(b)
    return out


def compute_samples(
    model: TPModel, info: DistInfo, ids: torch.Tensor, align: int, repeats: int
) -> tuple[list[list[float]], list[list[float]]]:
    """([q, p, ms] attention, [t, ms] MLP) of one length's compute-only prefills: per shape, the
    typical over layers and repeats on each rank, then the slowest rank's."""
    s = ids.shape[0]
    splits = shape_splits(s, align)
    variants = {f"v{i}": (b, COMPUTE_ONLY) for i, b in enumerate(splits)}
    traces: dict[str, list[list[dict]]] = {}
    time_prefills(model, info, ids, variants, 1, repeats, traces=traces)
    mine: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for name, bounds in zip(variants, splits, strict=True):
        for events in traces[name]:
            for e in events:
                if e["kind"] == "compute":
                    c = e["chunk"]
                    key = (e["stage"], bounds[c + 1] - bounds[c], bounds[c])
                    mine[key].append(e["end_ms"] - e["start_ms"])
    per_rank = dist.gather_objects({k: typical(v) for k, v in mine.items()}, info)
    slowest = {k: max(r[k] for r in per_rank) for k in per_rank[0]}
    attn = sorted([q, p, ms] for (stage, q, p), ms in slowest.items() if stage == "attn")
    mlp = sorted([q, ms] for (stage, q, _p), ms in slowest.items() if stage == "mlp")
    return attn, mlp


def whole_prefills(
    model: TPModel, info: DistInfo, ids: torch.Tensor, align: int, repeats: int
) -> dict[str, tuple[list[int], float]]:
    """name -> (bounds, typical ms of the slowest rank) of the baseline and ISO 50/50, interleaved."""
    s = ids.shape[0]
    variants = {"baseline": [0, s]}
    half = try_bounds(s, [0.5, 0.5], align)
    if half is not None:
        variants["iso5050"] = half
    times = time_prefills(model, info, ids, variants, 1, repeats)
    return {name: (b, times[name]) for name, b in variants.items()}


SKEW_GRID = [i * 0.02 for i in range(26)]  # 0 .. 0.50
SCALE_GRID = [0.3 + i * 0.05 for i in range(55)]  # 0.3 .. 3.0: wider than any link seen (0.86 .. 1.2)


def calibrate(
    prof: Profile, measured: dict[int, dict[str, tuple[list[int], float]]], layers: int
) -> tuple[float, float]:
    """(sync_skew, comm_scale) that make the cost model explain the whole prefills best (least
    squares in relative error over baseline and 50/50 at every length): a coarse grid, then a
    fine one around its best. Two causes the isolated op timings cannot see: the ranks drift
    apart, so each all-reduce waits for the slower one (the unsplit baseline pays it in full, a
    split hides some), and an all-reduce inside a prefill is not the one timed alone."""
    runs = [(bounds, ms) for by_name in measured.values() for bounds, ms in by_name.values()]

    def error(skew: float, scale: float) -> float:
        fit = dataclasses.replace(prof.fit, sync_skew=skew, comm_scale=scale)
        trial = dataclasses.replace(prof, fit=fit)
        return sum((simulate(trial, b, layers) / ms - 1) ** 2 for b, ms in runs)

    best = min((error(k, g), k, g) for k in SKEW_GRID for g in SCALE_GRID)
    _, k0, g0 = best
    fine = [(error(k, g), k, g) for k in _around(k0, 0.02, 0.005, 0.0) for g in _around(g0, 0.05, 0.01, 0.1)]
    _, skew, scale = min([best, *fine])
    return round(skew, 4), round(scale, 4)


def _around(center: float, span: float, step: float, floor: float) -> list[float]:
    n = round(span / step)
    return [max(floor, center + i * step) for i in range(-n, n + 1)]


def check_rows(prof: Profile, measured: dict[int, dict[str, tuple[list[int], float]]], layers: int) -> list[list]:
    """[[seq_len, variant, measured ms, predicted ms], ...]: the profile judged on whole prefills."""
    return [
        [s, name, round(ms, 3), round(simulate(prof, bounds, layers), 3)]
        for s, runs in measured.items()
        for name, (bounds, ms) in runs.items()
    ]
