"""Cost curves that follow the measurements: piecewise-linear tables over the shapes that were
timed inside real prefills, and the fits that turn in-context op samples into them. Pure Python.

A linear `a + b*tokens` misses what caches do (a 2816-wide MLP at 2048 tokens measured 27% above
its line on 2 cores); a table through the measured points does not, and between points a chunk's
cost moves smoothly enough for linear interpolation. Beyond the table the nearest segment's slope
carries on.
"""

from __future__ import annotations

from collections import defaultdict

from isotune.core.stats import typical


def interp(table: list[list[float]], x: float) -> float:
    """y at x on the piecewise-linear curve through `table` ([[x, y], ...], sorted by x),
    extended by its first and last segments; never below 0."""
    if len(table) == 1:
        x0, y0 = table[0]
        return max(0.0, y0 * x / x0) if x0 else max(0.0, y0)
    i = 1
    while i < len(table) - 1 and table[i][0] < x:
        i += 1
    (x0, y0), (x1, y1) = table[i - 1], table[i]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def table_of(samples: list[tuple[float, float]]) -> list[list[float]]:
    """[[x, typical y], ...] sorted by x, from (x, y) samples."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for x, y in samples:
        by_x[x].append(y)
    return [[x, typical(ys)] for x, ys in sorted(by_x.items())]


def fit_attention(samples: list[tuple[int, int, float]]) -> tuple[list[list[float]], float]:
    """(table of attention ms at prefix 0 by query tokens, ms per (query, prefix) token pair)
    from (q, p, ms) samples. The chunk's own causal triangle is inside the table; a prefix of p
    tokens adds q*p more pairs of the same kind, fitted in relative error so that small chunks
    count as much as big ones."""
    own = table_of([(q, ms) for q, p, ms in samples if p == 0])
    if not own:
        raise ValueError("attention samples need chunks at prefix 0")
    num = den = 0.0
    for q, p, ms in samples:
        if p > 0 and ms > 0:
            x, r = q * p / ms, (ms - interp(own, q)) / ms
            num, den = num + x * r, den + x * x
    return own, max(0.0, num / den) if den else 0.0
