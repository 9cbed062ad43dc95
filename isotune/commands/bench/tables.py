"""`isotune bench`'s tables, each within 80 columns: what ISO saves (with 95% intervals), where
the time goes, and, given a profile, how far the cost model's predictions are off; footnotes
in plain words, what it found per length in sentences, and a warning when a profile no longer
predicts this machine."""

from __future__ import annotations

from isotune.core.chunking import split_cell, split_text
from isotune.core.numbers import change_ci, ms, ms_ci, pct
from isotune.core.stats import verdict
from isotune.viz.tables import console, table

PREDICTION_WARN = 0.10  # a profile that misses a measurement by more than this is stale here


def show_bench(records: list[dict], title: str, repeats: int) -> None:
    out = console()
    has_plan = any(r["plan_ms"] is not None for r in records)
    t = table(title=f"{title}; measured, trimmed mean of {repeats}")
    cols = ["tokens", "baseline ms", "50/50 vs\nbase"]
    cols += ["plan split", "plan vs\nbase", "plan vs\n50/50"] if has_plan else []
    for c in cols:
        t.add_column(c, justify="left" if c == "plan split" else "right")
    for r in records:
        row = [str(r["seq_len"]), ms_ci(r["baseline_ms"], r["baseline_ms_ci"]), change_ci(r["iso5050_vs_baseline"])]
        if has_plan:
            split = split_cell(r["plan_ratios"]) if r["plan_ratios"] else "-"  # 8 chunks: three lines
            # a plan that keeps no split runs the baseline: its change against it is not a figure
            vs_base = change_ci(r["plan_vs_baseline"]) if r["plan_chunks"] != 1 else "(baseline)"
            row += [split, vs_base, change_ci(r["plan_vs_iso5050"])]
        t.add_row(*row)
    out.print(t)
    out.print("±: half the 95% interval; a change whose interval holds 0 is within noise.", highlight=False)
    _show_where(records, has_plan)
    if any(r["predicted_baseline_ms"] is not None for r in records):
        _show_predictions(records, has_plan)
    for line in verdicts(records):
        out.print(line, highlight=False)


def change_words(change: list[float]) -> str:
    """'saves 20.9% (95% CI 20.4%..21.4%)', 'is 3.1% slower (…)' or 'is within noise (…)'."""
    est, low, high = change
    kind = verdict(low, high)
    if kind == "faster":
        return f"saves {pct(-est).lstrip('+')} (95% CI {pct(-high).lstrip('+')}..{pct(-low).lstrip('+')})"
    if kind == "slower":
        return f"is {pct(est).lstrip('+')} slower (95% CI {pct(low)}..{pct(high)})"
    return f"is within noise ({pct(est)}, 95% CI {pct(low)}..{pct(high)})"


def verdicts(records: list[dict]) -> list[str]:
    """What bench found, a plain line per length (and plan): where the plan (or 50/50, given no
    plan) helps, where it is within noise, where the plan keeps no split and whether 50/50
    measured here agrees."""
    lines = ["What bench measured, per length:"]
    for r in records:
        head = f"  {r['seq_len']} tokens: "
        share = f"; all-reduces are {r['comm_ms'] / r['baseline_ms']:.0%} of the unsplit prefill"
        half = r["iso5050_vs_baseline"]
        if r["plan_ratios"] is None:
            lines.append(head + f"50/50 {change_words(half)}{share}")
        elif r["plan_chunks"] == 1:
            agree = (
                "but 50/50 here " + change_words(half) + ": the plan may be stale (search again)"
                if half[2] < 0
                else "and 50/50 here " + change_words(half)
            )
            lines.append(head + f"the plan keeps no split, {agree}{share}")
        else:
            lines.append(
                head + f"the plan ({split_text(r['plan_ratios'])}) {change_words(r['plan_vs_baseline'])}{share}"
            )
    return lines


def _show_where(records: list[dict], has_plan: bool) -> None:
    has_floor = any(r["floor_ms"] is not None for r in records)
    t = table(title="where the time goes (unsplit prefill), ms")
    # two-line headers, so the figures (up to '12702±161') never need cutting to fit 80 columns:
    # rich narrows the widest wrapable column first, a figure before a header it could wrap
    cols = ["tokens", "compute", "comm", "ideal", "overlap\neff."]
    cols += ["comm\nCPU", "floor", "eff.\nceiling", "share"] if has_floor else []
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    marks: set[str] = set()  # the reasons a share outside [0, 1] needs, said under the table
    for r in records:
        eff = r["overlap_efficiency"]
        row = [
            str(r["seq_len"]),
            ms_ci(r["compute_ms"], r["compute_ms_ci"]),
            ms_ci(r["comm_ms"], r["comm_ms_ci"]),
            ms(r["ideal_ms"]),
            _share(eff, marks),
        ]
        if has_floor:
            ceiling, share = r["efficiency_ceiling"], r["share_of_achievable"]
            row += [
                ms(r["comm_cpu_ms"]),
                ms(r["floor_ms"]),
                _share(ceiling, marks),
                _share(share, marks),
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
    notes += [OUTSIDE[m] for m in sorted(marks)]
    for n in notes:
        console().print(n, highlight=False)


OUTSIDE = {  # why a share of the hideable time can leave [0, 1]: never a bare number
    "a": "ᵃ below 0: the split was slower than the unsplit prefill, so it hid nothing and chunking cost more.",
    "b": "ᵇ above 1: the split beat max(compute, comm): the all-reduces timed alone (comm) took longer than "
    "they cost inside a prefill, so 'ideal' overstates the least a prefill can take.",
}


def _share(x: float | None, marks: set[str]) -> str:
    """A share of the hideable time, marked with the reason when it leaves [0, 1]."""
    if x is None:
        return "-"
    mark = "a" if x < 0 else "b" if x > 1 else None
    if mark:
        marks.add(mark)
    return f"{x:.2f}" + (SUPERSCRIPT[mark] if mark else "")


SUPERSCRIPT = {"a": "ᵃ", "b": "ᵇ"}  # one column wide: the marked figure keeps its width


def _show_predictions(records: list[dict], has_plan: bool) -> None:
    names = ["baseline", "iso5050"] + (["plan"] if has_plan else [])
    labels = {"baseline": "baseline", "iso5050": "50/50", "plan": "plan"}
    t = table(title="cost model (--profile): predicted ms and its error vs the measurement")
    t.add_column("tokens", justify="right")
    for n in names:
        t.add_column(f"{labels[n]}\npred.", justify="right")
        t.add_column("error", justify="right")
    worst: tuple[float, str] = (0.0, "")
    for r in records:
        row = [str(r["seq_len"])]
        for n in names:
            pred, measured = r.get(f"predicted_{n}_ms"), r.get(f"{n}_ms")
            if pred is None or not measured:
                row += ["-", "-"]
                continue
            err = pred / measured - 1
            row += [ms(pred), f"{err:+.1%}"]
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
