"""Eager vs --compile on one rank, side by side in one process: what compiling costs up front
and what it changes per prefill (interleaved repeats, paired 95% intervals). Compute only
(tp 1): the fused steps change compute, not communication.

    python3 benchmarks/compile.py --model small --layers 4 --seq-lens 256,1024 [--device cuda]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from isotune.core.chunking import chunk_bounds
from isotune.core.spec import load_spec
from isotune.core.stats import interval, paired_change
from isotune.engine.executor import prefill
from isotune.engine.fused import EAGER
from isotune.engine.model import build_model, compile_model, random_prompt
from isotune.engine.rank import DistInfo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="small")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-lens", default="256,1024")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device, 0) if a.device == "cuda" else torch.device("cpu")
    info = DistInfo(rank=0, world=1, local_rank=0, device=dev, backend=None, launched=False)
    lens = [int(x) for x in a.seq_lens.split(",")]
    model = build_model(load_spec(a.model, a.layers), info, getattr(torch, a.dtype), max(lens), seed=0)
    t0 = time.perf_counter()
    compiled = (compile_model(model, decode=False), model.ops)[1]
    print(f"compile: {time.perf_counter() - t0:.1f} s ({a.model} L{a.layers}, {a.dtype}, {a.device}, measured)")
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    print(f"{'tokens':>6} {'chunks':>6} {'eager ms':>14} {'compiled ms':>14} {'compiled vs eager (95% CI)':>30}")
    for s in lens:
        ids = torch.tensor(random_prompt(s, model.spec.vocab, 0), device=dev)
        for k in (1, 2, 8):
            bounds = chunk_bounds(s, [1 / k] * k, 16)
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for rep in range(a.repeats + 1):
                order = list(times)
                random.Random(rep).shuffle(order)
                for name in order:
                    model.ops = EAGER if name == "eager" else compiled
                    sync()
                    t = time.perf_counter()
                    prefill(model, ids, bounds)
                    sync()
                    if rep:  # the first round warms up
                        times[name].append((time.perf_counter() - t) * 1e3)
            e, c = interval(times["eager"]), interval(times["compiled"])
            ch = paired_change(times["eager"], times["compiled"])
            print(
                f"{s:>6} {k:>6} {e.estimate:>8.1f}±{(e.high - e.low) / 2:<5.1f} {c.estimate:>8.1f}±{(c.high - c.low) / 2:<5.1f}"
                f" {ch.estimate:>+10.1%} ({ch.low:+.1%}..{ch.high:+.1%})"
            )


if __name__ == "__main__":
    main()
