"""The emulated link held against a real shaped one: the same bench (baseline and ISO 50/50 per
length) on 2 ranks over a real shaped link (benchmarks/netns.py, root), on 2 ranks over loopback
with --link, and on the one-rank stand-in (--ranks 1 --link), in rounds that alternate the
three, so drift lands on all of them. Prints each figure's mean over the rounds with its range,
and the emulated and stand-in figures as a share of the real link's; writes the rows as JSON.

    python3 benchmarks/validate_link.py --rate 1gbit --rounds 2 --out validation.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("real", "emulated", "stand-in")


def bench(mode: str, rate: str, args: list[str], out: Path) -> dict:
    isotune = [sys.executable, "-m", "isotune", "bench", *args, "--json", str(out)]
    if mode == "real":
        cmd = [sys.executable, str(HERE / "netns.py"), "--ranks", "2", "--rate", rate, "--", *isotune]
    else:
        cmd = [*isotune, "--tp", "2", "--link", rate] + (["--ranks", "1"] if mode == "stand-in" else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{mode}: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return {rec["seq_len"]: rec for rec in json.loads(out.read_text())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="small")
    ap.add_argument("--layers", default="8")
    ap.add_argument("--seq-lens", default="1024,2048,4096")
    ap.add_argument("--repeats", default="3")
    ap.add_argument("--out", default="validation.json")
    a = ap.parse_args()
    args = ["--model", a.model, "--layers", a.layers, "--dtype", "bfloat16", "--seq-lens", a.seq_lens]
    args += ["--repeats", a.repeats]
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]  # neither end always runs first
            for mode in order:
                print(f"round {r + 1}: {mode}", file=sys.stderr, flush=True)
                runs[mode].append(bench(mode, a.rate, args, Path(tmp) / f"{mode}-{r}.json"))
    rows = []
    lens = sorted(runs["real"][0])
    print(
        f"{'tokens':>6} {'figure':<14} {'real ms':>16} {'emulated ms':>16} {'stand-in ms':>16} {'emu/real':>9} {'sti/real':>9}"
    )
    for s in lens:
        for fig in ("baseline_ms", "iso5050_ms", "comm_ms", "compute_ms"):
            vals = {m: [run[s][fig] for run in runs[m]] for m in MODES}
            mean = {m: statistics.fmean(v) for m, v in vals.items()}
            cell = {m: f"{mean[m]:.0f} ({min(v):.0f}..{max(v):.0f})" for m, v in vals.items()}
            emu, sti = mean["emulated"] / mean["real"], mean["stand-in"] / mean["real"]
            print(
                f"{s:>6} {fig:<14} {cell['real']:>16} {cell['emulated']:>16} {cell['stand-in']:>16} {emu:>9.3f} {sti:>9.3f}"
            )
            rows.append({"seq_len": s, "figure": fig, **{m: vals[m] for m in MODES}, "emulated_over_real": emu,
                         "stand_in_over_real": sti})  # fmt: skip
        saving = {m: 1 - mean_of(runs[m], s, "iso5050_ms") / mean_of(runs[m], s, "baseline_ms") for m in MODES}
        print(f"{s:>6} {'50/50 saving':<14} " + " ".join(f"{saving[m]:>16.1%}" for m in MODES))
        rows.append({"seq_len": s, "figure": "iso5050_saving", **saving})
    Path(a.out).write_text(json.dumps({"rate": a.rate, "args": args, "rows": rows}, indent=1) + "\n")
    return 0


def mean_of(runs: list[dict], s: int, fig: str) -> float:
    return statistics.fmean(run[s][fig] for run in runs)


if __name__ == "__main__":
    sys.exit(main())
