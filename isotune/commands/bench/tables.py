"""`isotune bench`'s tables, each within 100 columns: what ISO saves (with 95% intervals), where
the time goes, and, given a profile, how far the cost model's predictions are off; footnotes
in plain words and a warning when a profile no longer predicts this machine."""

from __future__ import annotations

from rich.table import Table

from isotune.core.chunking import split_text
from isotune.core.numbers import change_ci, ms_ci
from isotune.viz.tables import console

PREDICTION_WARN = 0.10  # a profile that misses a measurement by more than this is stale here


def show_bench(records: list[dict], title: str, repeats: int) -> None:
    out = console()
    has_plan = any(r["plan_ms"] is not None for r in records)
    t = Table(title=f"{title}; measured, trimmed mean of {repeats}")
    cols = ["tokens", "baseline ms", "50/50 vs base"]
    cols += ["plan split", "plan vs base", "plan vs 50/50"] if has_plan else []
    for c in cols:
        t.add_column(c, justify="left" if c == "plan split" else "right", overflow="fold")  # 8 chunks: 2 lines
    for r in records:
        row = [str(r["seq_len"]), ms_ci(r["baseline_ms"], r["baseline_ms_ci"]), change_ci(r["iso5050_vs_baseline"])]
        if has_plan:
            split = split_text(r["plan_ratios"]) if r["plan_ratios"] else "-"
            row += [split, change_ci(r["plan_vs_baseline"]), change_ci(r["plan_vs_iso5050"])]
        t.add_row(*row)
    out.print(t)
    out.print("±: half the 95% interval; a change whose interval holds 0 is within noise.", highlight=False)
    _show_where(records, has_plan)
    if any(r["predicted_baseline_ms"] is not None for r in records):
        _show_predictions(records, has_plan)


def _show_where(records: list[dict], has_plan: bool) -> None:
    has_floor = any(r["floor_ms"] is not None for r in records)
    t = Table(title="where the time goes (unsplit prefill), ms")
    # two-line headers, so the figures (up to '12702.3±161.2') never need cutting to fit 100 columns:
    # rich narrows the widest wrapable column first, a figure before a header it could wrap
    cols = ["tokens", "compute", "comm", "ideal", "overlap\neff."]
    cols += ["comm\nCPU", "floor", "eff.\nceiling", "share"] if has_floor else []
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    for r in records:
        eff = r["overlap_efficiency"]
        row = [
            str(r["seq_len"]),
            ms_ci(r["compute_ms"], r["compute_ms_ci"]),
            ms_ci(r["comm_ms"], r["comm_ms_ci"]),
            f"{r['ideal_ms']:.1f}",
            f"{eff:.2f}" if eff is not None else "-",
        ]
        if has_floor:
            ceiling, share = r["efficiency_ceiling"], r["share_of_achievable"]
            row += [
                f"{r['comm_cpu_ms']:.1f}",
                f"{r['floor_ms']:.1f}",
                f"{ceiling:.2f}" if ceiling is not None else "-",
                f"{share:.2f}" if share is not None else "-",
            ]
        t.add_row(*row)
    console().print(t)
    of = "the plan (of 50/50 where it keeps no split)" if has_plan else "50/50 (no plan given)"
    notes = [
        "compute: the prefill without its all-reduces; comm: its all-reduces alone; "
        "ideal = max(compute, comm), what perfect overlap would take.",
        f"overlap eff. = (baseline - ISO) / (baseline - ideal), of {of}.",
    ]
    if has_floor:
        notes += [
            "comm CPU: the CPU that communication's threads burned in the comm-only run (copies, sockets, sums); "
            "when compute fills every core it comes out of compute time, so floor = max(compute + comm CPU, comm) "
            "is the least a prefill can take here; eff. ceiling is the efficiency at that floor and share = "
            f"(baseline - ISO) / (baseline - floor), the part of the achievable saving that {of} reached.",
        ]
    for n in notes:
        console().print(n, highlight=False)


def _show_predictions(records: list[dict], has_plan: bool) -> None:
    names = ["baseline", "iso5050"] + (["plan"] if has_plan else [])
    labels = {"baseline": "baseline", "iso5050": "50/50", "plan": "plan"}
    t = Table(title="cost model (--profile): predicted ms and its error vs the measurement")
    t.add_column("tokens", justify="right")
    for n in names:
        t.add_column(f"{labels[n]} pred.", justify="right")
        t.add_column("error", justify="right")
    worst: tuple[float, str] = (0.0, "")
    for r in records:
        row = [str(r["seq_len"])]
        for n in names:
            pred, ms = r.get(f"predicted_{n}_ms"), r.get(f"{n}_ms")
            if pred is None or not ms:
                row += ["-", "-"]
                continue
            err = pred / ms - 1
            row += [f"{pred:.1f}", f"{err:+.1%}"]
            if abs(err) > abs(worst[0]):
                worst = (err, f"{labels[n]} at {r['seq_len']} tokens")
        t.add_row(*row)
    console().print(t)
    if abs(worst[0]) > PREDICTION_WARN:
        console().print(
            f"warning: the profile misses the {worst[1]} by {worst[0]:+.0%} (more than {PREDICTION_WARN:.0%}): "
            "it no longer predicts this machine; measure a new one with isotune profile",
            highlight=False,
        )
