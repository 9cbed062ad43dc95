"""Terminal output: the console every command prints through, and the tables of a profile and a plan."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from isotune.core.plan import Plan
from isotune.core.profile import Profile


def console() -> Console:
    """A console that keeps wide tables readable when output goes to a file or pipe."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def show_profile(p: Profile, path: str = "") -> None:
    out = console()
    topo, fit = p.topology, p.fit
    head = Table(title=f"profile {path}".strip(), show_header=False)
    head.add_row("model", f"{p.model['name']} ({p.model['layers']} layers, hidden {p.model['hidden']})")
    head.add_row(
        "topology",
        f"tp {topo['tp']} {topo['backend']} on {topo['device']}, {topo['interconnect']}, "
        f"{topo['hosts']} host(s), {topo['dtype']}",
    )
    head.add_row("software", ", ".join(f"{k} {v}" for k, v in p.software.items()))
    head.add_row("attention ms", f"{fit.attn[0]:.3g} + {fit.attn[1]:.3g}·q + {fit.attn[2]:.3g}·q·(p + q/2)")
    head.add_row("MLP ms", f"{fit.mlp[0]:.3g} + {fit.mlp[1]:.3g}·tokens")
    head.add_row("all-reduce ms", f"{fit.latency_ms:.3g} + {fit.ms_per_mb:.3g}·MB (back-to-back)")
    if fit.burst_mb:
        head.add_row("link token bucket", f"first {fit.burst_mb:.3g} MB after idle at {fit.burst_ms_per_mb:.3g} ms/MB")
    head.add_row("compute slowdown under comm", f"{fit.compute_slowdown:.1%}")
    out.print(head)

    t = Table(title="measured vs fitted (per layer, slowest rank)")
    for col in ("op", "shape", "measured ms", "fitted ms", "error"):
        t.add_column(col, justify="right" if col != "op" else "left")
    rows = [("attention", f"q={q:.0f} p={pfx:.0f}", ms, fit.attn_ms(int(q), int(pfx))) for q, pfx, ms in p.attn_samples]
    rows += [("MLP", f"{n:.0f} tokens", ms, fit.mlp_ms(int(n))) for n, ms in p.mlp_samples]
    rows += [("all-reduce", f"{n / 1e6:.2f} MB", ms, fit.allreduce_ms(int(n))) for n, ms in p.allreduce_samples]
    rows += [
        ("all-reduce after idle", f"{n / 1e6:.2f} MB", ms, fit.allreduce_ms(int(n), fit.burst_mb))
        for n, ms in p.allreduce_idle_samples
    ]
    for op, shape, ms, pred in rows:
        t.add_row(op, shape, f"{ms:.3f}", f"{pred:.3f}", f"{(pred - ms) / ms:+.0%}" if ms > 0 else "-")
    out.print(t)


def show_plan(plan: Plan, path: str = "") -> None:
    out = console()
    topo = plan.topology
    t = Table(
        title=f"plan {path}: {plan.model.get('name')}, tp {topo.get('tp')} {topo.get('backend')} on "
        f"{topo.get('device')}, {topo.get('dtype')}, align {plan.align}".replace("plan :", "plan:")
    )
    cols = ("tokens", "searched", "chunks", "ratios", "plan ms", "baseline ms", "vs baseline", "50/50 vs baseline")
    for col in (*cols, "trials"):
        t.add_column(col, justify="left" if col in ("tokens", "ratios") else "right")

    def vs(ms: float | None, base: float) -> str:
        return f"{(ms / base - 1):+.1%}" if ms and base else "-"

    for b in plan.buckets:
        t.add_row(
            f"{b.min_tokens}..{b.max_tokens}",
            str(b.seq_len or "-"),
            str(b.chunks),
            " / ".join(f"{r:.3f}" for r in b.ratios),
            f"{b.plan_ms:.1f}",
            f"{b.baseline_ms:.1f}",
            vs(b.plan_ms, b.baseline_ms),
            vs(b.iso5050_ms, b.baseline_ms),
            str(b.trials if b.trials is not None else "-"),
        )
    out.print(t)
    st = plan.study
    if st:
        out.print(
            f"study: {st.get('objective')} objective, {st.get('sampler')} sampler, up to {st.get('max_chunks')} "
            f"chunks, {st.get('trials')} trials per length; storage {st.get('storage')}, name {st.get('name')}-s<tokens>"
        )
