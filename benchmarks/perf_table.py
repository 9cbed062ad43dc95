"""The performance table of docs/results.md, from the bench JSON files benchmarks/perf.sh writes.

    python3 benchmarks/perf_table.py profiles/samples/perf > profiles/samples/perf/table.md

One row per setting and length: the times (trimmed mean, ± half the 95% interval), the paired
changes against the baseline and 50/50, where the time goes, and how far 50/50 sits above the
floor (compute plus the CPU communication burns on the compute's cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from isotune.core.numbers import change_ci, ms_ci, pct

SETTINGS = (  # file tag, what the table calls it
    ("small-l2-tp2-bf16-shaped1gbit", "tp2 1gbit"),
    ("small-l2-tp2-bf16-shaped2gbit", "tp2 2gbit"),
    ("small-l2-tp4-bf16-shaped1gbit", "tp4 1gbit"),
)
HEAD = (
    "setting", "tokens", "baseline ms", "50/50 vs base", "plan (kept)", "plan vs base", "plan vs 50/50",
    "compute ms", "comm ms", "comm CPU ms", "overlap eff.", "eff. ceiling", "50/50 above floor",
)  # fmt: skip


def ms(rec: dict, key: str) -> str:
    return ms_ci(rec[f"{key}_ms"], rec[f"{key}_ms_ci"])


def split(rec: dict) -> str:
    ratios = rec["plan_ratios"]
    return "no split" if len(ratios) == 1 else "/".join(f"{r:.2f}" for r in ratios)


def num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def row(name: str, rec: dict) -> list[str]:
    return [
        name, str(rec["seq_len"]), ms(rec, "baseline"), change_ci(rec["iso5050_vs_baseline"]), split(rec),
        change_ci(rec["plan_vs_baseline"]), change_ci(rec["plan_vs_iso5050"]), ms(rec, "compute"), ms(rec, "comm"),
        num(rec["comm_cpu_ms"], ".1f"), num(rec["overlap_efficiency"], ".2f"), num(rec["efficiency_ceiling"], ".2f"),
        "-" if rec["floor_ms"] is None else pct(rec["iso5050_ms"] / rec["floor_ms"] - 1),
    ]  # fmt: skip


def main(folder: str) -> None:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for tag, name in SETTINGS:
        for rec in json.loads((Path(folder) / f"bench-{tag}.json").read_text()):
            lines.append("| " + " | ".join(row(name, rec)) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
