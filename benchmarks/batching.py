"""Many requests at once, measured: two figures, each side by side in one run.

1. Text throughput: SmolLM2-135M-Instruct at tp 3 on CPU ranks, 16 prompts of 20-400 tokens,
   64 new tokens each, one after another (`run --prompts`) and 8 at a time (`--max-seqs 8`),
   in rounds that alternate the two. Sequential prompts are timed by their own records (prefill
   and decode, no model load), each one's arrival at the start of the run, as the batched
   run counts them.
2. ISO on packs: `small --layers 8` at tp 2 on an emulated 1 Gbit/s link: a plan searched for
   8 x 256-token prompts packed (`search --pack 256`), one searched for a 2048-token prompt and a
   256-token one alone, then `bench` of each plan at its length in alternating rounds.

    python3 benchmarks/batching.py --out docs/batching.json    # ~25 min on 2 cores
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
WORDS = (
    "The river town of Alder Creek was founded in 1852 by families who had travelled west in search of "
    "farmland. They built a mill, a school and a church, and the mill became the heart of the town: farmers "
    "brought grain from miles around and traded news, livestock and seed while they waited. A railway reached "
    "the valley by 1870, bringing a hotel, a bank and a newspaper whose first editor wrote that the town "
    "would one day rival the great cities of the east. A flood in 1889 destroyed the mill and half the "
    "houses; those who stayed rebuilt on higher ground and planted orchards, and the valley became known "
    "for its apples, shipped by rail as far as Chicago. "
).split()


def isotune(*args: str, log: Path | None = None) -> str:
    r = subprocess.run([sys.executable, "-m", "isotune", *args], capture_output=True, text=True)
    if log is not None:
        log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"isotune {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


def prompts_file(path: Path, n: int = 16) -> None:
    """n prompts whose lengths spread over 20..400 tokens (about 1.3 tokens a word here)."""
    lines = []
    for i in range(n):
        words = 15 + (300 - 15) * i // (n - 1)
        text = " ".join(WORDS[j % len(WORDS)] for j in range(i, i + words))
        lines.append(json.dumps({"prompt": text + " Summarise this in one sentence."}))
    path.write_text("\n".join(lines) + "\n")


def sequential_figures(doc: dict) -> dict:
    """Throughput and TTFT from arrival of prompts run one after another."""
    clock, ttft, generated = 0.0, [], 0
    for p in doc["prompts"]:
        decode_ms = (p["generated_tokens"] - 1) / p["decode_tok_s"] * 1e3 if p["decode_tok_s"] else 0.0
        ttft.append(clock + p["ttft_ms"])
        clock += p["ttft_ms"] + decode_ms
        generated += p["generated_tokens"]
    return {"tok_s": generated / clock * 1e3, "ttft_ms": ttft, "generated": generated}


def batched_figures(doc: dict) -> dict:
    s = doc["summary"]
    return {"tok_s": s["generated_tok_s"], "ttft_ms": [p["ttft_ms"] for p in doc["prompts"]],
            "generated": s["generated_tokens"]}  # fmt: skip


def mean_ci(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    half = 1.96 * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0
    return f"{m:.0f} ms (95% CI {m - half:.0f}..{m + half:.0f})"


def throughput(model: str, rounds: int, tmp: Path, keep: Path) -> dict:
    prompts = keep / "prompts-16.jsonl"
    prompts_file(prompts)
    base = ["run", "--model", model, "--tp", "3", "--prompts", str(prompts), "--max-new-tokens", "64"]
    figures: dict[str, list[dict]] = {"sequential": [], "batched": []}
    for r in range(rounds):
        for mode in ("sequential", "batched") if r % 2 == 0 else ("batched", "sequential"):
            print(f"throughput round {r + 1}: {mode}", file=sys.stderr, flush=True)
            out = tmp / f"{mode}-{r}.json"
            extra = ["--max-seqs", "8"] if mode == "batched" else []
            isotune(*base, *extra, "--json", str(out), log=keep / f"run-{mode}-{r}.txt")
            doc = json.loads(out.read_text())
            figures[mode].append(batched_figures(doc) if mode == "batched" else sequential_figures(doc))
    for mode, runs in figures.items():
        speeds = [x["tok_s"] for x in runs]
        ttft = [t for x in runs for t in x["ttft_ms"]]
        print(f"{mode:>10}: {statistics.fmean(speeds):.1f} tok/s ({min(speeds):.1f}..{max(speeds):.1f} over "
              f"{len(runs)} rounds), mean TTFT from arrival {mean_ci(ttft)}")  # fmt: skip
    ratio = [b["tok_s"] / s["tok_s"] for s, b in zip(figures["sequential"], figures["batched"], strict=True)]
    print(
        f"batched / sequential generated tokens/s: {statistics.fmean(ratio):.2f} ({min(ratio):.2f}..{max(ratio):.2f})"
    )
    return {"runs": figures, "speedup": ratio}


def packs(rounds: int, trials: int, tmp: Path, keep: Path) -> dict:
    m = ["--model", "small", "--layers", "8", "--tp", "2", "--dtype", "bfloat16", "--link", "1gbit"]
    single, packed = keep / "plan-single.yaml", keep / "plan-pack256.yaml"
    for f in (single, packed):
        f.unlink(missing_ok=True)
        f.with_suffix(".study.log").unlink(missing_ok=True)
    print("search: single prompts of 256 and 2048 tokens", file=sys.stderr, flush=True)
    isotune("search", *m, "--seq-lens", "256,2048", "--trials", str(trials), "--repeats", "3", "-o", str(single),
            log=keep / "search-single.txt")  # fmt: skip
    print("search: 2048 tokens as 8 x 256-token prompts", file=sys.stderr, flush=True)
    isotune("search", *m, "--seq-lens", "2048", "--pack", "256", "--trials", str(trials), "--repeats", "3",
            "-o", str(packed), log=keep / "search-pack256.txt")  # fmt: skip
    runs: dict[str, list[dict]] = {"single": [], "pack": []}
    for r in range(rounds):
        for mode in ("single", "pack") if r % 2 == 0 else ("pack", "single"):
            print(f"bench round {r + 1}: {mode}", file=sys.stderr, flush=True)
            out = tmp / f"bench-{mode}-{r}.json"
            extra = ["--seq-lens", "256,2048", "--plan", str(single)] if mode == "single" else [
                "--seq-lens", "2048", "--pack", "256", "--plan", str(packed)]  # fmt: skip
            isotune("bench", *m, *extra, "--repeats", "5", "--json", str(out), log=keep / f"bench-{mode}-{r}.txt")
            runs[mode].append({rec["seq_len"]: rec for rec in json.loads(out.read_text())})

    def saving(mode: str, s: int, fig: str) -> list[float]:
        return [1 - run[s][f"{fig}_ms"] / run[s]["baseline_ms"] for run in runs[mode]]

    rows = {
        "256 alone": (runs["single"][0][256]["plan_chunks"], saving("single", 256, "plan")),
        "2048 alone": (runs["single"][0][2048]["plan_chunks"], saving("single", 2048, "plan")),
        "8 x 256 packed": (runs["pack"][0][2048]["plan_chunks"], saving("pack", 2048, "plan")),
    }
    for name, (chunks, s) in rows.items():
        print(f"{name:>15}: plan keeps {chunks} chunk(s), saves {statistics.fmean(s):.1%} "
              f"({min(s):.1%}..{max(s):.1%} over the rounds)")  # fmt: skip
    return {"runs": runs, "rows": {k: {"chunks": c, "saving": s} for k, (c, s) in rows.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="SmolLM2 folder (default: python3 tests/fixtures/smollm2.py)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--keep", default="batching-runs", help="a folder for what each command printed")
    ap.add_argument("--out", default="batching.json")
    ap.add_argument("--only", choices=("throughput", "packs"))
    a = ap.parse_args()
    model = a.model or subprocess.run([sys.executable, str(HERE.parent / "tests" / "fixtures" / "smollm2.py")],
                                      capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    keep = Path(a.keep)
    keep.mkdir(parents=True, exist_ok=True)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        if a.only in (None, "throughput"):
            result["throughput"] = throughput(model, a.rounds, Path(tmp), keep)
        if a.only in (None, "packs"):
            result["packs"] = packs(a.rounds, a.trials, Path(tmp), keep)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
