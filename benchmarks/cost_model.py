"""How fast the cost model simulates one prefill: the figure that makes `search --objective
model` and the search's warm start cheap. A benchmark, not a test (a timed assertion would
fail on a busy machine and prove nothing on a quiet one):

    python benchmarks/cost_model.py

prints simulations per second, as median and range over rounds, per layers x chunks.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from isotune.core.chunking import chunk_bounds
from isotune.core.cost import simulate
from isotune.core.profile import load_profile

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "small-l2-tp2-bf16-cpu-gloo-shaped1gbit.yaml"
ROUND_S = 0.3
ROUNDS = 5


def rate(profile, bounds: list[int], layers: int) -> float:
    """Simulations per second over one round of ROUND_S."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < ROUND_S:
        simulate(profile, bounds, layers)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    prof = load_profile(PROFILE)  # a token-bucket link: the slowest path through the simulator
    print(f"cost model on {PROFILE.name}, {ROUNDS} rounds of {ROUND_S} s (measured on this machine)")
    print(f"{'layers':>6} {'chunks':>6} {'sims/s median':>14} {'range':>20}")
    for layers in (2, 32, 80):
        for ratios in ([1.0], [0.5, 0.5], [0.3, 0.3, 0.4], [0.25] * 4):
            bounds = chunk_bounds(4096, ratios, 16)
            rates = [rate(prof, bounds, layers) for _ in range(ROUNDS)]
            span = f"{min(rates):,.0f} .. {max(rates):,.0f}"
            print(f"{layers:>6} {len(ratios):>6} {statistics.median(rates):>14,.0f} {span:>20}")


if __name__ == "__main__":
    main()
