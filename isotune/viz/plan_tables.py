"""A plan on the terminal: its buckets as a table (within 100 columns), each bucket's decision
in the words the search printed, and what it found, in plain words: where splitting pays on
this machine, where it does not, and why."""

from __future__ import annotations

from isotune.core.chunking import split_cell, split_text
from isotune.core.credentials import redact
from isotune.core.decide import NOISE, NONE, SLOWER, SMALL
from isotune.core.numbers import change_ci, ms
from isotune.core.plan import Bucket, Plan
from isotune.core.spec import layers_text
from isotune.viz.tables import console, table

LITTLE_COMM = 0.10  # all-reduces below this share of a prefill leave too little to hide


def _vs(change: list[float] | None, ms: float | None, base: float) -> str:
    """The paired change where the plan has one, else (older plans) the ratio of times."""
    if change:
        return change_ci(change)
    return f"{(ms / base - 1):+.1%}" if ms and base else "-"


def show_plan(plan: Plan, path: str = "", decisions: bool = True) -> None:
    """The plan's table, and per bucket why it was kept (`decisions`: a search that just said them
    line by line as it went leaves them out)."""
    out = console()
    topo = plan.topology
    where = f"plan {path}: " if path else "plan: "
    t = table(
        title=f"{where}{plan.model.get('name')} ({layers_text(plan.model.get('layers'))}), tp {topo.get('tp')} "
        f"{_backend(topo)}, {topo.get('dtype')}, align {plan.align}"
        # a plan searched on an analytic profile is for modelled hardware: say which
        + (f", for {topo['hardware']} (modelled, not measured)" if topo.get("hardware") else "")
    )
    for col in ("tokens", "at", "split", "plan\nms", "base\nms", "vs base", "50/50", "trials"):
        t.add_column(col, justify="left" if col in ("tokens", "split") else "right")
    for b in plan.buckets:
        t.add_row(
            b.span,
            str(b.seq_len or "-"),
            split_cell(b.ratios, per_line=2),  # 8 chunks: four lines, folded between ratios
            ms(b.plan_ms),
            ms(b.baseline_ms),
            _vs(b.vs_baseline, b.plan_ms, b.baseline_ms) if b.chunks > 1 else "-",
            _vs(b.iso5050_vs_baseline, b.iso5050_ms, b.baseline_ms),
            str(b.trials if b.trials is not None else "-"),
        )
    out.print(t)
    measured = plan.study.get("objective") != "model"
    out.print(
        "at: the length each bucket was searched at. vs base, 50/50: change of the prefill time against the "
        "unsplit baseline, "
        + (
            "paired repeat by repeat (so not quite the ratio of the ms columns), ± half its 95% interval "
            "(slightly asymmetric)."
            if measured
            else "predicted by the cost model."
        ),
        highlight=False,
    )
    for b in plan.buckets if decisions else []:  # the why of every bucket, in the words the search printed
        at = f"{b.seq_len} tokens" if b.seq_len else b.span
        if b.decision:
            out.print(f"{at}: {b.decision}", highlight=False)
        if b.stopped and b.stopped.startswith("stopped"):
            out.print(f"{at}: study {b.stopped}", highlight=False)
    st = plan.study
    if st:  # redacted again: a plan written before isotune redacted them may hold a password
        out.print(
            f"study: {st.get('objective')} objective, {st.get('sampler')} sampler, up to {st.get('max_chunks')} "
            f"chunks, {st.get('trials')} trials per length; storage {redact(str(st.get('storage')))}, name {st.get('name')}-s<tokens>",
            highlight=False,
        )


def _backend(topo: dict) -> str:
    """A one-rank plan's backend is 'none' in the file; titles say 'single', as run's do."""
    return "single" if topo.get("backend") in (None, "none") else str(topo.get("backend"))


def findings(plan: Plan) -> list[str]:
    """What the plan says about this machine, in a few plain lines."""
    topo = plan.topology
    measured = plan.study.get("objective") != "model"
    lines = [
        f"What isotune {'measured' if measured else 'predicts'} for {plan.model.get('name')} "
        f"({layers_text(plan.model.get('layers'))}), tp {topo.get('tp')} {_backend(topo)} on {topo.get('device')}, "
        f"{topo.get('interconnect')}:"
    ]
    for kept, group in _runs(plan.buckets):
        span = f"{group[0].min_tokens}..{group[-1].max_tokens} tokens"
        if kept:
            for b in group:
                saved = f"saves {-b.vs_baseline[0]:.1%}" if b.vs_baseline else f"takes {b.plan_ms:.1f} ms"
                ci = f" (95% CI {-b.vs_baseline[2]:.1%}..{-b.vs_baseline[1]:.1%})" if b.vs_baseline and measured else ""
                lines.append(f"  splitting pays at {b.span} tokens: {split_text(b.ratios)} {saved}{ci}")
        else:
            lines.append(f"  splitting does not pay at {span}: {_why_not(group)}")
    shares = [b.comm_ms / b.baseline_ms for b in plan.buckets if b.comm_ms and b.baseline_ms]
    if topo.get("tp") == 1:
        lines.append("  why: one rank, so no all-reduces: a split only adds chunking's cost (tp 2+ to overlap)")
    elif shares:
        why = f"  why: all-reduces are {_range(shares)} of the unsplit prefill"
        cpu = [b.comm_cpu_ms / b.baseline_ms for b in plan.buckets if b.comm_cpu_ms and b.baseline_ms]
        if cpu:
            why += (
                f"; on CPU ranks {_range(cpu)} is their own CPU work (gloo's copies and sums) on the cores "
                "the compute needs, which no overlap can hide"
            )
        elif max(shares) < LITTLE_COMM:
            why += ": too little to hide"
        lines.append(why)
    return lines


def _runs(buckets: list[Bucket]) -> list[tuple[bool, list[Bucket]]]:
    """Consecutive buckets grouped by whether they split."""
    out: list[tuple[bool, list[Bucket]]] = []
    for b in buckets:
        if out and out[-1][0] == (b.chunks > 1):
            out[-1][1].append(b)
        else:
            out.append((b.chunks > 1, [b]))
    return out


WHY_NOT = {
    NOISE: "no split beat the baseline beyond the noise of this machine",
    SLOWER: "splitting was slower",
    SMALL: "the cost model's best split saves under 1%",
    NONE: "no split fits",
}


def _why_not(group: list[Bucket]) -> str:
    found = dict.fromkeys(WHY_NOT[b.outcome] for b in group if b.outcome in WHY_NOT)
    return "; ".join(found) or "no split was better"


def _range(xs: list[float]) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:.0%}" if round(lo, 2) == round(hi, 2) else f"{lo:.0%}-{hi:.0%}"
