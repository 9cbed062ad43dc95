"""`isotune estimate`'s table (one row per hardware x TP x length, 100 columns) and its plot
(the tuned split's saving against length, a line per hardware and TP, 50/50 dashed)."""

from __future__ import annotations

from rich.table import Table

from isotune.core.estimate import Estimate
from isotune.viz.png import png_bytes, pyplot
from isotune.viz.tables import console


def show_estimates(rows: list[Estimate], title: str) -> None:
    measured = any(r.compute != "modelled" for r in rows)
    caption = (
        "predicted by the cost model: compute measured (meas.) on a stand-in or modelled (model) from the catalog"
        if measured
        else "predicted by the cost model from the catalog: nothing here was measured"
    )
    t = Table(title=title, caption=caption)
    cols = ("hardware", "tp", "tokens", "baseline ms", "50/50", "tuned split", "tuned", "ideal", "comm")
    for col in cols + (("compute",) if measured else ()):
        t.add_column(col, justify="left" if col in ("hardware", "tuned split") else "right")
    last = None
    for r in rows:
        first = (r.hardware, r.tp) != last
        last = (r.hardware, r.tp)
        cells = [
            r.hardware if first else "",
            str(r.tp) if first else "",
            str(r.tokens),
            f"{r.baseline_ms:.1f}",
            f"{-r.iso5050_saving:+.1%}",
            r.tuned_split,
            f"{-r.saving:+.1%}",
            f"{r.ideal_ms / r.baseline_ms - 1:+.1%}",
            f"{r.comm_share:.0%}",
        ]
        t.add_row(*cells, *(("model" if r.compute == "modelled" else "meas.",) if measured else ()))
    out = console()
    out.print(t)
    out.print(
        "50/50, tuned, ideal: change of the prefill time against the unsplit one; ideal = max(compute, comm), "
        "perfect overlap; comm: the all-reduces' share of the unsplit prefill.",
        highlight=False,
    )


def estimate_png(rows: list[Estimate], title: str) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = sorted({(r.hardware, r.tp) for r in rows})
    for i, (hw, tp) in enumerate(series):
        mine = sorted((r for r in rows if (r.hardware, r.tp) == (hw, tp)), key=lambda r: r.tokens)
        xs = [r.tokens for r in mine]
        color = f"C{i % 10}"
        ax.plot(xs, [100 * r.saving for r in mine], marker="o", color=color, label=f"{hw} tp {tp}")
        ax.plot(xs, [100 * r.iso5050_saving for r in mine], ls="--", color=color, alpha=0.6)
    ax.set_xscale("log", base=2)
    lens = sorted({r.tokens for r in rows})
    ax.set_xticks(lens, [str(t) for t in lens])
    ax.minorticks_off()
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("prefill time saved (%)")
    ax.set_title(title + "\npredicted (analytic profiles); solid: tuned split, dashed: ISO 50/50", fontsize=10)
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=8, ncol=2)
    return png_bytes(fig)
