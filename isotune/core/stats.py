"""The one statistic every timing in isotune is summarised by, its confidence interval, and the
paired comparison that decisions rest on. Pure Python.

`typical` is a trimmed mean: from five repeats on, the single fastest and the single slowest
are dropped and the rest averaged. Profile, search, bench and run all use it, so the
cost model is fitted on the same statistic it is judged against.

Why not the median: a prefill is a sum of many ops, so the cost model must cost each op by its
mean, and loopback all-reduces are bimodal (1 MB on 2 cores: 1.1 to 4.9 ms, median 1.9, mean
2.6), where a median hides the slow mode that every prefill pays its share of.
Why not the plain mean: one repeat hit by a scheduler hiccup on a shared machine moves it by
several per cent; trimming one repeat at each end keeps the mean's sense without that outlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def trimmed(samples: list[float]) -> list[float]:
    """The samples that `typical` averages, sorted."""
    ts = sorted(samples)
    if not ts:
        raise ValueError("no samples to summarise")
    # one each end (more would cut into a bimodal slow mode), from five on: trimming four would
    # leave two, and an interval with one degree of freedom
    cut = 1 if len(ts) >= 5 else 0
    return ts[cut : len(ts) - cut]


def typical(samples: list[float]) -> float:
    """Trimmed mean of repeated timings (see the module docstring for why this one)."""
    kept = trimmed(samples)
    return sum(kept) / len(kept)


# Student's t, two-sided 95% (0.975 quantile), by degrees of freedom; between rows the value is
# interpolated in 1/df, beyond the last it tends to the normal 1.96.
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000,
    120: 1.980,
}  # fmt: skip


def t975(df: int) -> float:
    if df < 1:
        return math.inf
    if df in _T975:
        return _T975[df]
    rows = sorted(_T975)
    if df > rows[-1]:
        return 1.96 + (_T975[rows[-1]] - 1.96) * rows[-1] / df
    lo = max(r for r in rows if r < df)
    hi = min(r for r in rows if r > df)
    w = (1 / lo - 1 / df) / (1 / lo - 1 / hi)
    return _T975[lo] + w * (_T975[hi] - _T975[lo])


@dataclass(frozen=True, kw_only=True)
class Interval:
    """An estimate and its 95% confidence interval; n = samples behind it (1: no interval)."""

    estimate: float
    low: float
    high: float
    n: int

    def triple(self) -> list[float]:
        """[estimate, low, high], as plans and bench records store an interval."""
        return [self.estimate, self.low, self.high]


def interval(samples: list[float]) -> Interval:
    """`typical(samples)` with its 95% interval (Yuen's interval of a trimmed mean: the
    winsorized variance, h - 1 degrees of freedom, h the samples kept). One sample: no width."""
    xs = sorted(samples)
    n = len(xs)
    est = typical(xs)
    kept = trimmed(xs)
    h, g = len(kept), (n - len(kept)) // 2
    if h < 2:
        return Interval(estimate=est, low=est, high=est, n=n)
    wins = [xs[g]] * g + xs[g : n - g] + [xs[n - g - 1]] * g
    mean_w = sum(wins) / n
    var_w = sum((x - mean_w) ** 2 for x in wins) / (n - 1)
    se = math.sqrt((n - 1) * var_w / (h * (h - 1)))
    half = t975(h - 1) * se
    return Interval(estimate=est, low=est - half, high=est + half, n=n)


def paired_change(base: list[float], other: list[float]) -> Interval:
    """Relative change of `other` against `base` from paired repeats (repeat i of both ran side by
    side), as fractions: -0.06 is 6% faster. Computed on log ratios, so it is symmetric in what
    is slow and what is fast, and drift that moves both members of a pair cancels."""
    if len(base) != len(other) or not base:
        raise ValueError("paired samples must be non-empty and of equal length")
    logs = interval([math.log(o / b) for b, o in zip(base, other, strict=True)])
    return Interval(estimate=math.expm1(logs.estimate), low=math.expm1(logs.low), high=math.expm1(logs.high), n=logs.n)


def verdict(low: float, high: float) -> str:
    """What a change's 95% interval says of a time: "faster" (all of it below 0), "slower" (all
    above) or "within noise" (it holds 0). One reading for every table and line that says it."""
    return "within noise" if low <= 0 <= high else "faster" if high < 0 else "slower"


def wins(base: list[float], other: list[float]) -> int:
    """How many paired repeats `other` was faster in."""
    return sum(o < b for b, o in zip(base, other, strict=True))


def mean_interval(samples: list[float]) -> Interval:
    """The plain mean with its t interval: for figures that are not repeats of one measurement
    but one per item (each prompt's time to first token in a batch), where every item counts."""
    n = len(samples)
    if n == 0:
        raise ValueError("no samples to summarise")
    mean = sum(samples) / n
    if n < 2:
        return Interval(estimate=mean, low=mean, high=mean, n=n)
    half = t975(n - 1) * math.sqrt(sum((x - mean) ** 2 for x in samples) / (n - 1) / n)
    return Interval(estimate=mean, low=mean - half, high=mean + half, n=n)
