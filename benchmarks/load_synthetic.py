"""Time and peak memory to build one rank's synthetic model, rank by rank, each in a fresh
process (no process group: loading is all that is measured).

    python3 benchmarks/load_synthetic.py llama3-70b --layers 2 --tp 2 --dtype bfloat16

Run it with PYTHONPATH pointing at another checkout to compare two versions on one machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one_rank(model: str, layers: int | None, tp: int, rank: int, dtype: str) -> dict:
    import torch

    from isotune.core.spec import load_spec
    from isotune.engine.model import build_model
    from isotune.engine.rank import DistInfo

    torch.set_num_threads(1)
    spec = load_spec(model, layers)
    info = DistInfo(rank=rank, world=tp, local_rank=rank, device=torch.device("cpu"), backend=None, launched=False)
    t0 = time.perf_counter()
    build_model(spec, info, getattr(torch, dtype), 128, seed=0)
    seconds = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux
    return {"rank": rank, "build_s": round(seconds, 2), "peak_rss_gib": round(peak_gib, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # the child's own run
    a = ap.parse_args()
    if a.rank is not None:
        print(json.dumps(one_rank(a.model, a.layers, a.tp, a.rank, a.dtype)))
        return
    for rank in range(a.tp):
        cmd = [sys.executable, __file__, a.model, "--tp", str(a.tp), "--dtype", a.dtype, "--rank", str(rank)]
        cmd += ["--layers", str(a.layers)] if a.layers else []
        r = subprocess.run(cmd, capture_output=True, text=True)
        line = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else f"failed ({r.returncode}): {r.stderr[-200:]}"
        print(f"{a.model} layers {a.layers or 'all'} tp {a.tp} {a.dtype}: {line}", flush=True)


if __name__ == "__main__":
    main()
