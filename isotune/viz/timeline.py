"""A Gantt chart of rank 0's traced prefills: baseline above plan, each with a compute lane and
a comm lane, ops coloured by stage, idle gaps left blank, total times in the title. Needs
matplotlib (`pip install 'isotune[plots]'`)."""

from __future__ import annotations

from isotune.core.schedule import ATTN, COMM, MLP
from isotune.viz.png import png_bytes, pyplot

COLORS = {(ATTN, False): "#4C78A8", (MLP, False): "#F58518", (ATTN, True): "#9ECAE9", (MLP, True): "#FFBF79"}


def timeline_png(runs: dict[str, list[dict]], title: str, timed: str | None = None) -> bytes:
    """PNG bytes of the chart for rank 0's events per run (run name -> events). `timed`: the
    times a table beside it measured in other prefills, said under the chart's own so a reader
    never takes one for the other."""
    plt = pyplot()
    from matplotlib.patches import Patch

    names = list(runs)  # e.g. ["baseline", "plan"]: top to bottom
    total = {n: max((e["end_ms"] for e in runs[n]), default=0.0) for n in names}
    fig, ax = plt.subplots(figsize=(14, 1.1 + 1.1 * len(names)), dpi=110)
    ticks, labels = [], []
    for row, name in enumerate(names):
        base = (len(names) - 1 - row) * 3  # two lanes per run and a gap
        for lane, is_comm in ((base + 1, False), (base, True)):
            ticks.append(lane)
            labels.append(f"{name} {'comm' if is_comm else 'compute'}")
            spans = [e for e in runs[name] if (e["kind"] == COMM) == is_comm]
            ax.broken_barh(
                [(e["start_ms"], max(e["end_ms"] - e["start_ms"], 1e-3)) for e in spans],
                (lane - 0.4, 0.8),
                facecolors=[COLORS[e["stage"], is_comm] for e in spans],
                edgecolor="white",
                linewidth=0.4,
            )
            for e in spans:  # name the wide bars; narrow ones stay readable through the legend
                if (e["end_ms"] - e["start_ms"]) > 0.045 * max(total.values()):
                    mid = (e["start_ms"] + e["end_ms"]) / 2
                    ax.text(mid, lane, f"L{e['layer']} c{e['chunk']}", ha="center", va="center", fontsize=7)
        ax.axvline(total[name], ymin=0, ymax=1, color="#888", linestyle=":", linewidth=0.8)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("ms since the prefill started (rank 0)")
    ax.set_xlim(0, max(total.values(), default=1.0) * 1.02)
    ax.grid(axis="x", alpha=0.3)
    parts = "this traced prefill (rank 0): " + ", ".join(f"{n} {total[n]:.1f} ms" for n in names)
    ax.set_title(f"{title}\n{parts}" + (f"\n{timed}" if timed else ""), fontsize=10)
    ax.legend(
        handles=[
            Patch(color=COLORS[ATTN, False], label="attention"),
            Patch(color=COLORS[MLP, False], label="MLP"),
            Patch(color=COLORS[ATTN, True], label="all-reduce after attention"),
            Patch(color=COLORS[MLP, True], label="all-reduce after MLP"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(names) > 1 else -0.45),
        ncol=4,
        frameon=False,
        fontsize=8,
    )
    return png_bytes(fig)
