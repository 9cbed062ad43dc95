"""What a GPU run pays besides its kernels, measured on a GPU machine.

    python3 benchmarks/gpu_overheads.py OUT.json cold|compiled ...

cold: a prompt length's first call against its second. cuDNN builds a graph per shape
(TORCH_CUDNN_SDPA_AVOID_RECOMPILE=1 asks torch 2.9+ to reuse one across lengths: run the part
with and without it, each in a fresh process). compiled: the host's cost per call of eager,
step-compiled and region-compiled steps (why --compile is not the launch fix on an H200).
"""

import os
import statistics
import time

import torch
import torch.nn.functional as F
from gpu_probe import DT, run_parts  # the script beside this one (its folder is on sys.path)


def cold(out: dict) -> None:
    """Part 4: what a prompt of a length not seen before pays, first call against second (wall
    ms, synchronised): cuDNN builds a graph per shape (TORCH_CUDNN_SDPA_AVOID_RECOMPILE=1 asks
    torch 2.9+ to reuse one across lengths; run the part with and without it, each in a fresh
    process). Attention alone, then whole prefills of llama3-8b (2 layers) as `run` makes them."""
    import functools

    from isotune.commands.doctor.measure import build
    from isotune.core.chunking import chunk_bounds
    from isotune.engine.attention import _chunk_attention_cuda
    from isotune.engine.executor import prefill

    def wall(fn) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1e3

    rows = []
    for s in (3008, 5056):
        q, k, v = (torch.randn(1, h, s, 128, device="cuda", dtype=DT) for h in (32, 8, 8))
        h = s // 2
        later = functools.partial(_chunk_attention_cuda, q[:, :, h:], k, v, h, s)
        fns = {
            "unsplit, SDPA's choice": functools.partial(
                F.scaled_dot_product_attention, q, k, v, is_causal=True, enable_gqa=True
            ),
            "later chunk, cudnn merged": functools.partial(later, how="cudnn"),
            "later chunk, flash": functools.partial(later, how="flash"),
        }
        for name, fn in fns.items():
            first, second = wall(fn), wall(fn)
            rows.append({"what": name, "tokens": s, "first_ms": first, "second_ms": second})
            print(f"  {s} tokens, {name:28s}: first call {first:8.2f} ms, second {second:6.2f} ms")
        diff = (fns["later chunk, cudnn merged"]().float() - fns["later chunk, flash"]().float()).abs().max().item()
        print(f"  {s} tokens: cudnn merged vs flash, max abs diff {diff:.4f}")
        rows.append({"what": "cudnn vs flash max diff", "tokens": s, "diff": diff})
    m = build("llama3-8b", 2, "bfloat16", 8192, "cuda")
    with torch.inference_mode():
        for s, k in ((2944, 1), (3136, 2), (6016, 1), (6208, 2)):
            ids = torch.randint(0, m.spec.vocab, (s,), device="cuda")
            bounds = chunk_bounds(s, [1 / k] * k, 64)
            run = functools.partial(prefill, m, ids, bounds)
            first, second = wall(run), wall(run)
            rows.append({"what": f"prefill, {k} chunk(s)", "tokens": s, "first_ms": first, "second_ms": second})
            print(f"  prefill {s} tokens, {k} chunk(s): first {first:8.2f} ms, second {second:6.2f} ms")
    out["cold"] = rows
    out["avoid_recompile"] = os.environ.get("TORCH_CUDNN_SDPA_AVOID_RECOMPILE")


def compiled(out: dict) -> None:
    """Part 5: the host's µs per call of a layer's MLP eager, with today's --compile (each
    elementwise step compiled on its own, GEMMs eager) and compiled as one region (norm, GEMM,
    SwiGLU, GEMM in one torch.compile), and of RMSNorm alone. Tiny sizes: the GPU's time is
    negligible, the host's is what is left. Rounds interleaved."""
    from isotune.engine.fused import EAGER, compiled_ops

    fused = compiled_ops()
    x = torch.randn(64, 256, device="cuda", dtype=DT)  # (T, hidden)
    wn = torch.ones(256, device="cuda", dtype=DT)
    wgu, wd = torch.randn(1024, 256, device="cuda", dtype=DT), torch.randn(256, 512, device="cuda", dtype=DT)

    def mlp(ops):
        return lambda: F.linear(ops.swiglu(F.linear(ops.norm(x, wn, 1e-5), wgu)), wd)

    def region(x, wn, wgu, wd):
        return F.linear(EAGER.swiglu(F.linear(EAGER.norm(x, wn, 1e-5), wgu)), wd)

    whole = torch.compile(region, dynamic=True, fullgraph=True)
    fns = {
        "MLP eager": mlp(EAGER),
        "MLP, steps compiled (--compile)": mlp(fused),
        "MLP, one compiled region": lambda: whole(x, wn, wgu, wd),
        "RMSNorm eager": lambda: EAGER.norm(x, wn, 1e-5),
        "RMSNorm compiled": lambda: fused.norm(x, wn, 1e-5),
    }
    t0 = time.perf_counter()
    for f in fns.values():  # compile (dynamic: one graph for every length)
        for _ in range(3):
            f()
    torch.cuda.synchronize()
    print(f"  compiling took {time.perf_counter() - t0:.1f} s")
    times = {k: [] for k in fns}
    for _ in range(5):
        for k, f in fns.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(100):
                f()
            times[k].append((time.perf_counter() - t0) / 100 * 1e6)
            torch.cuda.synchronize()
    for k, v in times.items():
        print(f"  {k:34s}: {statistics.median(v):6.1f} us of host per call ({min(v):.1f}..{max(v):.1f})")
    out["compiled"] = {k: {"us": statistics.median(v), "min": min(v), "max": max(v)} for k, v in times.items()}


if __name__ == "__main__":
    run_parts({"cold": cold, "compiled": compiled})
