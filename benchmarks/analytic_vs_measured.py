"""Hold analytic profiles against one bench: for each length and variant the bench measured
(baseline, ISO 50/50, the plan), each profile's prediction and its error, from the same
measurements (bench --json). Prints a Markdown table.

    python3 benchmarks/analytic_vs_measured.py bench.json analytic.yaml measured.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from isotune.core.chunking import chunk_bounds
from isotune.core.cost import simulate
from isotune.core.profile import load_profile


def main(bench_path: str, *profile_paths: str) -> None:
    recs = json.loads(open(bench_path).read())
    profiles = [(p, load_profile(p)) for p in profile_paths]
    align = 16
    names = [Path(path).stem for path, _ in profiles]
    head = "| tokens | variant | measured ms (95% CI) |" + "".join(f" {n} pred. | error |" for n in names)
    print(head)
    print("|---" * (3 + 2 * len(profiles)) + "|")
    worst = {path: 0.0 for path, _ in profiles}
    for r in recs:
        s = r["seq_len"]
        plan = r.get("plan_ratios") or [1.0]
        variants = {
            "baseline": [0, s],
            "50/50": chunk_bounds(s, [0.5, 0.5], align),
            "plan " + "/".join(f"{x:.2f}" for x in plan): chunk_bounds(s, plan, align),
        }
        keys = {"baseline": "baseline", "50/50": "iso5050"}
        for name, bounds in variants.items():
            key = keys.get(name, "plan")
            ms, (lo, hi) = r[f"{key}_ms"], r[f"{key}_ms_ci"]
            row = f"| {s} | {name} | {ms:.1f} ({lo:.1f}..{hi:.1f}) |"
            for path, p in profiles:
                pred = simulate(p, bounds, int(p.model["layers"]))
                err = pred / ms - 1
                worst[path] = max(worst[path], abs(err))
                row += f" {pred:.1f} | {err:+.1%} |"
            print(row)
    print()
    for path, _ in profiles:
        print(f"worst |error| of {path}: {worst[path]:.1%}")


if __name__ == "__main__":
    main(*sys.argv[1:])
