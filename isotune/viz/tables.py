"""Terminal output: the console every command prints through, how a figure and its interval are
written, and the tables of a profile."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from isotune.core.cost import host_lane_text
from isotune.core.profile import Profile


class FigureTable(Table):
    """A table whose one-word columns (figures, names, splits folded by hand) never wrap: rich
    narrows a wrapable column by folding inside a word when it must, which cuts '12702±195' in
    two; so only columns with words to wrap between may narrow, headers included."""

    def __rich_console__(self, console, options):
        for col in self.columns:
            cells = [str(c) for c in col._cells]  # noqa: SLF001 - rich keeps a column's cells there
            col.no_wrap = col.no_wrap or not any(" " in line for c in cells for line in c.splitlines())
        yield from super().__rich_console__(console, options)


def table(title: str | None = None, **kw) -> Table:
    """isotune's table: a rule under the header and columns two spaces apart, no boxes, so nine
    columns of figures fit an 80-column terminal; a figure is never cut (tests/viz/test_width.py)."""
    return FigureTable(title=title, box=box.SIMPLE_HEAVY, collapse_padding=True, pad_edge=False, show_edge=False, **kw)


def console(stderr: bool = False) -> Console:
    """The terminal's console (stderr's when stdout carries the answer: generated text, JSON
    lines). On a pipe or a file, COLUMNS wide, else 80: every table is made to fit 80 columns."""
    return Console(stderr=stderr)


def show_profile(p: Profile, path: str = "") -> None:
    out = console()
    topo, fit = p.topology, p.fit
    head = table(title=f"profile {path}".strip(), show_header=False)
    head.add_row("model", f"{p.model['name']} ({p.model['layers']} layers, hidden {p.model['hidden']})")
    head.add_row(
        "topology",
        f"tp {topo['tp']} {topo['backend']} on {topo['device']}, {topo['interconnect']}, "
        f"{topo['hosts']} host(s), {topo['dtype']}",
    )
    head.add_row("software", ", ".join(f"{k} {v}" for k, v in p.software.items()))
    if p.source != "measured":  # computed, not measured: say from what
        head.add_row("source", f"{p.source} (nothing here was measured)")
        for i, line in enumerate(p.assumptions):
            head.add_row("assumes" if i == 0 else "", line)
    if fit.attn_table:
        head.add_row(
            "attention ms",
            f"table by query tokens ({len(fit.attn_table)} shapes) + {fit.attn_ms_per_pair:.3g}·q·prefix",
        )
        how = "timed inside prefills" if p.source == "measured" else "computed"
        head.add_row("MLP ms", f"table by tokens ({len(fit.mlp_table or [])} shapes), {how}")
    else:
        head.add_row("attention ms", f"{fit.attn[0]:.3g} + {fit.attn[1]:.3g}·q + {fit.attn[2]:.3g}·q·(p + q/2)")
        head.add_row("MLP ms", f"{fit.mlp[0]:.3g} + {fit.mlp[1]:.3g}·tokens")
    if fit.allreduce_table:  # what the cost model reads; the line is only its summary
        sizes = [mb for mb, _ in fit.allreduce_table if mb > 0]
        head.add_row(
            "all-reduce ms",
            f"by message size, {len(sizes)} sizes {sizes[0]:.3g}..{sizes[-1]:.3g} MB, read between them "
            f"(≈ {fit.latency_ms:.3g} + {fit.ms_per_mb:.3g}·MB)",
        )
    else:
        head.add_row("all-reduce ms", f"{fit.latency_ms:.3g} + {fit.ms_per_mb:.3g}·MB (back-to-back)")
    if fit.sync_skew or fit.comm_scale != 1.0:
        head.add_row(
            "inside a prefill",
            f"an all-reduce starts {fit.sync_skew:.1%} of its producer's time late (rank skew) "
            f"and takes {fit.comm_scale:.2f}x its isolated time",
        )
    if fit.burst_mb:
        head.add_row("link token bucket", f"first {fit.burst_mb:.3g} MB after idle at {fit.burst_ms_per_mb:.3g} ms/MB")
    head.add_row("compute slowdown under comm", f"{fit.compute_slowdown:.1%}")
    head.add_row("host (launch) lane", host_lane_text(p))
    out.print(head)

    groups = {
        "attention": [(f"q={q:.0f} p={pfx:.0f}", ms, fit.attn_ms(int(q), int(pfx))) for q, pfx, ms in p.attn_samples],
        "MLP": [(f"{n:.0f} tokens", ms, fit.mlp_ms(int(n))) for n, ms in p.mlp_samples],
        "all-reduce": [(f"{n / 1e6:.2f} MB", ms, fit.allreduce_ms(int(n))) for n, ms in p.allreduce_samples],
        "all-reduce after idle": [
            (f"{n / 1e6:.2f} MB", ms, fit.allreduce_ms(int(n), fit.burst_mb)) for n, ms in p.allreduce_idle_samples
        ],
    }
    if not any(groups.values()):  # an analytic profile: nothing was measured to compare
        return
    t = table(title="measured vs fitted, per layer op (slowest rank)")
    for col in ("op", "samples", "ms", "median |error|", "worst error", "worst at"):
        t.add_column(col, justify="left" if col in ("op", "worst at") else "right")
    for op, rows in groups.items():
        if not rows:
            continue
        errs = sorted(((pred - ms) / ms, shape) for shape, ms, pred in rows if ms > 0)
        worst = max(errs, key=lambda e: abs(e[0]))
        span = f"{min(ms for _, ms, _ in rows):.2f}..{max(ms for _, ms, _ in rows):.2f}"
        median_err = sorted(abs(e) for e, _ in errs)[len(errs) // 2]
        t.add_row(op, str(len(rows)), span, f"{median_err:.1%}", f"{worst[0]:+.1%}", worst[1])
    out.print(t)
    if p.check_samples:
        c = table(title="whole prefills: measured vs the cost model (they also fit skew and comm scale)")
        for col in ("tokens", "variant", "measured ms", "predicted ms", "error"):
            c.add_column(col, justify="left" if col == "variant" else "right")
        for s, name, ms, pred in p.check_samples:
            c.add_row(str(s), name, f"{ms:.1f}", f"{pred:.1f}", f"{pred / ms - 1:+.1%}" if ms > 0 else "-")
        out.print(c)
