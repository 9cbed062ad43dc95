"""The one statistic every timing in isotune is summarised by. Pure Python.

`typical` is a trimmed mean: the fastest and slowest fifth of the repeats dropped (at least one
each from four repeats on), the rest averaged. Profile, search, bench and run all use it, so the
cost model is fitted on the same statistic it is judged against.

Why not the median: a prefill is a sum of many ops, so the cost model must cost each op by its
mean, and loopback all-reduces are bimodal (1 MB on 2 cores: 1.1 to 4.9 ms, median 1.9, mean
2.6), where a median hides the slow mode that every prefill pays its share of.
Why not the plain mean: one repeat hit by a scheduler hiccup on a shared machine moves it by
several per cent; trimming the extremes keeps the mean's sense without that outlier.
"""

from __future__ import annotations

TRIM = 0.2  # share of the repeats dropped at each end


def trimmed(samples: list[float]) -> list[float]:
    """The samples that `typical` averages, sorted."""
    ts = sorted(samples)
    if not ts:
        raise ValueError("no samples to summarise")
    cut = max(1, int(len(ts) * TRIM)) if len(ts) >= 4 else 0
    return ts[cut : len(ts) - cut]


def typical(samples: list[float]) -> float:
    """Trimmed mean of repeated timings (see the module docstring for why this one)."""
    kept = trimmed(samples)
    return sum(kept) / len(kept)
