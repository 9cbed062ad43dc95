"""Write the catalog's `cpu` entry (profiles/hardware/cpu.yaml) from micro-benchmarks on this
host, so the analytic profile can be held against a measured one on the same machine:
one thread's bf16 matmul and flash-attention rates, one thread's memory bandwidth, and gloo's
all-reduce over loopback between 2 ranks (small-message time, bus bandwidth at 16 MB, and the
matmul slowdown while one runs). Every number's source line says how it was measured.

    OMP_WAIT_POLICY=PASSIVE python3 benchmarks/cpu_hardware.py [-o profiles/hardware/cpu.yaml]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time

import torch
import yaml

from isotune.core.files import atomic_write_text
from isotune.engine import dist

REPEATS = 7


def _median_s(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


TOKENS = (16, 64, 256, 1024, 4096)  # the chunk sizes rates are measured at


def compute_rates() -> dict:
    torch.set_num_threads(1)  # one compute thread per rank, as isotune runs CPU ranks
    w = torch.randn(1024, 2816, dtype=torch.bfloat16)
    gemm = []
    for t in TOKENS:  # small GEMMs use a core less well: the rate by rows
        a = torch.randn(t, 1024, dtype=torch.bfloat16)
        gemm.append([t, 2 * t * 1024 * 2816 / _median_s(lambda a=a: a @ w) / 1e12])
    attend = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    attn = []
    for t in TOKENS[1:]:  # causal self-attention of t tokens, 4 heads of 128
        q, k, v = (torch.randn(1, 4, t, 128, dtype=torch.bfloat16) for _ in range(3))
        pairs = t * (t + 1) / 2  # causal (query, key) pairs
        attn.append([t, 4 * 4 * 128 * pairs / _median_s(lambda q=q, k=k, v=v: attend(q, k, v, 0.0, True)) / 1e12])
    elem = _elementwise_gb_s()
    x = torch.ones(64 * 2**20, dtype=torch.float32)  # 256 MB, touched: far beyond the caches
    y = torch.empty_like(x)
    mem = 2 * x.numel() * 4 / _median_s(lambda: y.copy_(x)) / 1e9  # read + write
    return {"gemm": gemm, "attn": attn, "mem_gb_s": mem, "elem_gb_s": elem}


def _elementwise_gb_s() -> float:
    """The rate isotune's eager RMSNorm, RoPE and SwiGLU reach, counted in their minimal bytes
    (what a fused kernel moves): eager, each makes several passes in fp32."""
    from isotune.engine.layers import apply_rope, rms_norm, swiglu

    t, h, f, d = 1024, 1024, 1408, 128
    x, wn = torch.randn(t, h, dtype=torch.bfloat16), torch.randn(h, dtype=torch.bfloat16)
    qk = torch.randn(t, 4 + 2, d, dtype=torch.bfloat16)  # a chunk's query and key heads
    cos, sin = torch.randn(t, 1, d, dtype=torch.bfloat16), torch.randn(t, 1, d, dtype=torch.bfloat16)
    gu = torch.randn(t, 2 * f, dtype=torch.bfloat16)
    minimal = 2 * (2 * t * h + 2 * t * 6 * d + 3 * t * f)  # bf16 bytes: read + write of each step

    def steps():
        rms_norm(x, wn, 1e-5)
        apply_rope(qk, cos, sin)
        swiglu(gu)

    return minimal / _median_s(steps) / 1e9


def _comm_worker(info, path: str) -> int:
    torch.set_num_threads(1)
    small, big = torch.ones(8), torch.ones(4 * 2**20)  # 32 B, 16 MB fp32

    def reduce(t):
        dist.all_reduce_async(t).wait()

    lat = _timed(lambda: reduce(small), info, 50)
    t_big = _timed(lambda: reduce(big), info, REPEATS)
    n = info.world
    busbw = big.numel() * 4 * 2 * (n - 1) / n / t_big / 1e9  # nccl-tests' bus bandwidth
    # the message sizes a prefill sends (1-16 MB): bus bandwidth by size, as nccl-tests reports it
    # (3x the repeats, sizes interleaved round by round: gloo over loopback is noisy at these sizes)
    bufs = {mb: torch.ones(mb * 2**18) for mb in (1, 2, 4, 8, 16)}  # mb MB of fp32
    times: dict[int, list[float]] = {mb: [] for mb in bufs}
    for _ in range(3 * REPEATS):
        for mb, buf in bufs.items():
            times[mb].append(_timed(lambda b=buf: reduce(b), info, 1))
    by_size = [
        [b.numel() * 4, b.numel() * 4 * 2 * (n - 1) / n / statistics.median(times[mb]) / 1e9] for mb, b in bufs.items()
    ]
    a = torch.randn(512, 1024, dtype=torch.bfloat16)
    w = torch.randn(1024, 2816, dtype=torch.bfloat16)
    alone = _timed(lambda: a @ w, info, REPEATS)

    # matmul throughput while the all-reduce flies, against alone: count the matmuls done
    done, spent = 0, 0.0
    for _ in range(REPEATS):
        dist.barrier(info)
        h = dist.all_reduce_async(big)
        t0 = time.perf_counter()
        while not h.is_completed():
            a @ w
            done += 1
        spent += time.perf_counter() - t0
        h.wait()
    slowdown = max(0.0, (spent / max(done, 1)) / alone - 1)
    if info.is_main:
        with open(path, "w") as f:
            json.dump(
                {"latency_us": lat * 1e6, "busbw_gb_s": busbw, "slowdown": slowdown, "t_big_ms": t_big * 1e3}
                | {"by_size": by_size},
                f,
            )
    return 0


def _timed(fn, info, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        dist.barrier(info)
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(dist.max_across(ts, info.device))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", default="profiles/hardware/cpu.yaml")
    out = ap.parse_args().out
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rates = compute_rates()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "comm.json")
        assert dist.run_ranks(_comm_worker, dist.Ranks(tp=2), path) == 0
        with open(path) as f:
            comm = json.load(f)
    host = f"{platform.node()} ({os.cpu_count()} vCPU, {platform.processor() or platform.machine()})"
    how = f"measured on {host} by benchmarks/cpu_hardware.py, {datetime.date.today().isoformat()}, torch {torch.__version__}"
    entry = {
        "isotune_hardware": 1,
        "name": "cpu",
        "arch": "cpu",
        "description": f"this project's CPU machines: 1 compute thread per rank, gloo over loopback ({host})",
        "gpu": {
            "bf16_dense_tflops": {"value": round(max(r for _, r in rates["gemm"]), 5),
                                  "points": [[t, round(r, 5)] for t, r in rates["gemm"]],
                                  "source": f"{how}: 1 thread, bf16 (tokens x 1024)@(1024 x 2816) matmul, median of {REPEATS}, "
                                            "by tokens (points); value: the best; achieved rates, not a peak"},
            "hbm_gb_s": {"value": round(rates["mem_gb_s"], 2),
                         "source": f"{how}: 1 thread, copy of a 256 MB fp32 tensor, read + write bytes / time"},
            "sm_count": {"value": 1, "source": "one compute thread per rank (isotune's default --threads 1)"},
            "memory_gib": {"value": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                           "source": "host memory, os.sysconf"},
        },
        "interconnect": {
            "kind": "loopback",
            "p2p": True,
            "link_gb_s": {"value": round(comm["busbw_gb_s"], 3), "source": f"{how}: gloo all-reduce bus bandwidth, as below"},
            "nccl_channels": {"value": 1, "source": "gloo runs its all-reduce on one thread per rank (no NCCL here)"},
            "allreduce": [
                {"tp": 2, "busbw_gb_s": round(comm["busbw_gb_s"], 3), "latency_us": round(comm["latency_us"], 1),
                 "source": f"{how}: 2 ranks, gloo over loopback; busbw = 16 MB x 2(n-1)/n / median time "
                           f"({comm['t_big_ms']:.2f} ms), latency = median time of a 32-byte all-reduce; "
                           "points: [message bytes, busbw GB/s] at 1-16 MB",
                 "points": [[b, round(bw, 3)] for b, bw in comm["by_size"]]},
            ],
        },
        "measured": {
            "attention_tflops": {"value": round(max(r for _, r in rates["attn"]), 5),
                                 "points": [[t, round(r, 5)] for t, r in rates["attn"]],
                                 "source": f"{how}: 1 thread, the CPU flash-attention kernel isotune runs, 4 heads x 128, "
                                           "causal self-attention by tokens (points); 4·heads·128 FLOPs per (query, key) pair"},
            "elementwise_gb_s": {"value": round(rates["elem_gb_s"], 3),
                                 "source": f"{how}: 1 thread, isotune's eager RMSNorm + RoPE + SwiGLU at 1024 tokens, "
                                           "their minimal (fused) bytes / time"},
            "compute_slowdown": {"value": round(comm["slowdown"], 4),
                                 "source": f"{how}: bf16 matmul time per call while a 16 MB gloo all-reduce flies, vs alone"},
        },
    }  # fmt: skip
    text = "# Written by benchmarks/cpu_hardware.py: rerun it to measure another host.\n"
    atomic_write_text(out, text + yaml.safe_dump(entry, sort_keys=False, width=200))
    print(f"wrote {out}: {rates} {comm}")


if __name__ == "__main__":
    main()
