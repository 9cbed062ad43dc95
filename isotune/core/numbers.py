"""How isotune writes its numbers, in tables and in sentences alike: signed percentages that
never read '-0.0', a typical time with half its 95% interval, a paired change with its own."""

from __future__ import annotations

from isotune.core.stats import Interval


def points(x: float) -> str:
    """A fraction as signed % points, one decimal, no '%': '+12.3'. Rounded first and + 0.0, so a
    change that rounds to zero reads '+0.0', never '-0.0'."""
    return f"{round(x * 100, 1) + 0.0:+.1f}"


def pct(x: float) -> str:
    return f"{points(x)}%"


def ci_text(iv: Interval) -> str:
    return f"95% CI {pct(iv.low)}..{pct(iv.high)}"


def ms(x: float) -> str:
    """A time in ms, one decimal below 1000 ms, whole ms from there: '552.7', '12702'."""
    return f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"


def ms_ci(t: float | None, ci: list[float] | None) -> str:
    """'552.7±4.1', '12702±195': a typical ms and half its 95% interval."""
    if t is None:
        return "-"
    half = (ci[1] - ci[0]) / 2 if ci else None
    return ms(t) + ("" if half is None else f"±{half:.1f}" if abs(t) < 1000 else f"±{half:.0f}")


def change_ci(change: list[float] | None) -> str:
    """'-18.7±1.5%': a paired change and half its 95% interval (in % points); '-18.7%' when the
    change has no interval (a prediction)."""
    if not change:
        return "-"
    est, low, high = change
    return points(est) + (f"±{(high - low) * 50:.1f}%" if high > low else "%")
