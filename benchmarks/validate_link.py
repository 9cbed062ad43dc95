"""The emulated link held against a real shaped one: the same bench (baseline, ISO 50/50 and a
searched plan per length) on 2 ranks over a real shaped link (benchmarks/netns.py, root), on 2
ranks over loopback with --link, and on the one-rank stand-in (--ranks 1 --link), in rounds that
alternate them, so drift lands on all of them.

With --trials N it first searches two plans: one on the real link, one on the stand-in. Every
bench then runs the real link's plan, and a fourth bench per round runs the stand-in's plan on
the real link: how much of the real plan's saving a plan searched on one rank keeps.

Prints each figure's mean over the rounds with its range, and the emulated and stand-in figures
as a share of the real link's; writes the rows as JSON.

    python3 benchmarks/validate_link.py --rate 1gbit --rounds 2 --trials 10 --out validation.json
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
STANDIN_PLAN = "real, stand-in's plan"  # the stand-in's searched plan benched on the real link


def isotune_on(mode: str, rate: str, args: list[str]) -> list[str]:
    """The command line that runs `isotune ARGS` on MODE's link."""
    if mode == "real":
        return [sys.executable, str(HERE / "netns.py"), "--ranks", "2", "--rate", rate, "--",
                sys.executable, "-m", "isotune", *args]  # fmt: skip
    extra = ["--tp", "2", "--link", rate] + (["--ranks", "1"] if mode == "stand-in" else [])
    return [sys.executable, "-m", "isotune", *args, *extra]


def call(what: str, cmd: list[str], log: Path | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if log is not None:
        log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"{what}: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")


def bench(mode: str, rate: str, args: list[str], plan: Path | None, out: Path) -> dict:
    extra = ["--plan", str(plan), "--force"] if plan else []  # plans from another link: said, not refused
    call(mode, isotune_on(mode, rate, ["bench", *args, *extra, "--json", str(out)]))
    return {rec["seq_len"]: rec for rec in json.loads(out.read_text())}


def search(mode: str, rate: str, args: list[str], trials: int, out: Path, logs: Path | None) -> Path:
    print(f"search on the {mode} link ({trials} trials per length)", file=sys.stderr, flush=True)
    log = logs / f"search-{mode}.txt" if logs else None
    call(f"search {mode}", isotune_on(mode, rate, ["search", *args, "--trials", str(trials), "-o", str(out)]), log)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="small")
    ap.add_argument("--layers", default="8")
    ap.add_argument("--seq-lens", default="1024,2048,4096")
    ap.add_argument("--repeats", default="3")
    ap.add_argument("--trials", type=int, default=0, help="search plans first (0: bench 50/50 only)")
    ap.add_argument("--keep", help="a folder to keep the searched plans and what the searches printed")
    ap.add_argument("--out", default="validation.json")
    a = ap.parse_args()
    args = ["--model", a.model, "--layers", a.layers, "--dtype", "bfloat16", "--seq-lens", a.seq_lens]
    args += ["--repeats", a.repeats]
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(a.keep) if a.keep else Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        plans: dict[str, Path] = {}
        if a.trials:
            for mode in ("real", "stand-in"):
                out = keep / f"plan-{mode}.yaml"
                out.unlink(missing_ok=True)
                out.with_suffix(".study.log").unlink(missing_ok=True)  # a fresh study, never a resumed one
                plans[mode] = search(mode, a.rate, args, a.trials, out, keep if a.keep else None)
        modes = MODES + ((STANDIN_PLAN,) if plans else ())
        runs: dict[str, list[dict]] = {m: [] for m in modes}
        for r in range(a.rounds):
            order = modes if r % 2 == 0 else modes[::-1]  # neither end always runs first
            for mode in order:
                print(f"round {r + 1}: {mode}", file=sys.stderr, flush=True)
                link, plan = ("real", plans.get("stand-in")) if mode == STANDIN_PLAN else (mode, plans.get("real"))
                runs[mode].append(bench(link, a.rate, args, plan, Path(tmp) / f"bench-{r}-{modes.index(mode)}.json"))
    rows = report(runs, bool(plans))
    Path(a.out).write_text(
        json.dumps({"rate": a.rate, "args": args, "trials": a.trials, "rows": rows}, indent=1) + "\n"
    )
    return 0


def report(runs: dict[str, list[dict]], searched: bool) -> list[dict]:
    rows = []
    lens = sorted(runs["real"][0])
    print(
        f"{'tokens':>6} {'figure':<14} {'real ms':>16} {'emulated ms':>16} {'stand-in ms':>16} {'emu/real':>9} {'sti/real':>9}"
    )
    figures = ("baseline_ms", "iso5050_ms") + (("plan_ms",) if searched else ()) + ("comm_ms", "compute_ms")
    for s in lens:
        for fig in figures:
            vals = {m: [run[s][fig] for run in runs[m]] for m in MODES}
            mean = {m: statistics.fmean(v) for m, v in vals.items()}
            cell = {m: f"{mean[m]:.0f} ({min(v):.0f}..{max(v):.0f})" for m, v in vals.items()}
            emu, sti = mean["emulated"] / mean["real"], mean["stand-in"] / mean["real"]
            print(
                f"{s:>6} {fig:<14} {cell['real']:>16} {cell['emulated']:>16} {cell['stand-in']:>16} {emu:>9.3f} {sti:>9.3f}"
            )
            rows.append({"seq_len": s, "figure": fig, **{m: vals[m] for m in MODES}, "emulated_over_real": emu,
                         "stand_in_over_real": sti})  # fmt: skip
        for fig in ("iso5050",) + (("plan",) if searched else ()):
            saving = {m: saving_of(runs[m], s, fig) for m in MODES}
            print(f"{s:>6} {fig + ' saving':<14} " + " ".join(f"{saving[m][0]:>16.1%}" for m in MODES))
            rows.append({"seq_len": s, "figure": f"{fig}_saving", **{m: saving[m][0] for m in MODES},
                         **{f"{m}_range": saving[m][1:] for m in MODES}})  # fmt: skip
        if searched:
            row = kept_share(runs, s)
            head = f"{s:>6} stand-in's plan on the real link: saves {row['stand_in_plan_saving']:.1%}, "
            if row["kept"] is None:
                print(head + "and the real link's own plan keeps no split here: no share to take")
            else:
                print(
                    head + f"the real link's own plan {row['real_plan_saving']:.1%}: it keeps {row['kept']:.2f} "
                    f"of that ({row['kept_range'][0]:.2f}..{row['kept_range'][1]:.2f} over the rounds)"
                )
            rows.append(row)
    return rows


def saving_of(runs: list[dict], s: int, fig: str) -> tuple[float, float, float]:
    """1 - fig/baseline from the means over the rounds, with the lowest and highest of one round."""
    per_round = [1 - run[s][f"{fig}_ms"] / run[s]["baseline_ms"] for run in runs]
    return 1 - mean_of(runs, s, f"{fig}_ms") / mean_of(runs, s, "baseline_ms"), min(per_round), max(per_round)


def kept_share(runs: dict[str, list[dict]], s: int) -> dict:
    """The stand-in's plan's saving on the real link as a share of the real plan's, both against
    the baselines of their own benches; per round too (the rounds pair them)."""
    own, sti = saving_of(runs["real"], s, "plan"), saving_of(runs[STANDIN_PLAN], s, "plan")
    row = {"seq_len": s, "figure": "stand_in_plan_kept", "real_plan_saving": own[0], "stand_in_plan_saving": sti[0],
           "real_plan_splits": runs["real"][0][s]["plan_chunks"] > 1, "kept": None, "kept_range": None}  # fmt: skip
    if not row["real_plan_splits"]:  # the real plan runs the baseline: its saving is 0 by definition
        return row
    per_round = [
        (1 - b[s]["plan_ms"] / b[s]["baseline_ms"]) / (1 - a[s]["plan_ms"] / a[s]["baseline_ms"])
        for a, b in zip(runs["real"], runs[STANDIN_PLAN], strict=True)
    ]
    return row | {"kept": sti[0] / own[0], "kept_range": [min(per_round), max(per_round)]}


def mean_of(runs: list[dict], s: int, fig: str) -> float:
    return statistics.fmean(run[s][fig] for run in runs)


if __name__ == "__main__":
    sys.exit(main())
