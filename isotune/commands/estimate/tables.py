"""`isotune estimate`'s table (one row per hardware x TP x length, 100 columns) and its plot
(the tuned split's saving against length, a line per hardware and TP, 50/50 dashed)."""

from __future__ import annotations

from isotune.core.chunking import split_cell
from isotune.core.estimate import Estimate
from isotune.core.numbers import ms, pct
from isotune.viz.png import png_bytes, pyplot
from isotune.viz.tables import console, table


def show_estimates(rows: list[Estimate], title: str) -> None:
    measured = any(r.compute != "modelled" for r in rows)
    caption = (
        "predicted by the cost model; compute measured on a stand-in (*) or modelled from the catalog"
        if measured
        else "predicted by the cost model from the catalog: nothing here was measured"
    )
    t = table(title=title, caption=caption)
    for col in ("hardware", "tp", "tokens", "baseline\nms", "50/50", "tuned split", "tuned", "ideal"):
        t.add_column(col, justify="left" if col in ("hardware", "tuned split") else "right")
    last = None
    for r in rows:
        first = (r.hardware, r.tp) != last
        last = (r.hardware, r.tp)
        name = r.hardware + ("*" if r.compute != "modelled" else "")  # the caption says what * means
        t.add_row(
            name if first else "",
            str(r.tp) if first else "",
            str(r.tokens),
            ms(r.baseline_ms),
            pct(-r.iso5050_saving),
            split_cell([float(x) for x in r.tuned_split.split("/")]) if "/" in r.tuned_split else r.tuned_split,
            pct(-r.saving),
            pct(r.ideal_ms / r.baseline_ms - 1),
        )
    out = console()
    out.print(t)
    out.print(
        "50/50, tuned, ideal: change of the prefill time against the unsplit one; ideal = max(compute, comm), "
        "perfect overlap, which hides all of the smaller of the two.",
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
