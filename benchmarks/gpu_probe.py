"""Where a GPU's split prefill loses time, measured piece by piece (run on the GPU machine in question).

    python3 benchmarks/gpu_probe.py OUT.json [attention] [host] [prefills]

1. Attention of a prompt's second chunk (queries start..end against keys 0..end, the causal
   diagonal at the lower right), every way torch can run it, against the unsplit causal call and
   the first chunk's, each checked against float32 attention of the same tensors. The first
   doctor run on an H200 found 2 chunks' attention kernels 80% slower than one at 8192 tokens:
   the square causal call may go to cuDNN, while torch.nn.attention.bias's lower-right mask calls
   FlashAttention-2 itself.
2. The host's time per op issuing one eager layer (torch.profiler's CPU view) and the Python
   functions that take it (cProfile), with a bare launch's cost on this machine for scale.
3. Whole prefills before and after the changes those two parts led to, rounds interleaved.
(benchmarks/gpu_overheads.py: what a new length's first call and a compiled call cost.)
Each part is timed with CUDA events, rounds interleaved.
"""

import cProfile
import io
import json
import pstats
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from isotune.engine.attention import chunk_attention
from isotune.engine.timing import device_ms

DT = torch.bfloat16
CALLS, ROUNDS = 10, 5


def timed(fns: dict, calls: int = CALLS, rounds: int = ROUNDS) -> dict:
    """ms per call of each fn: CUDA events around `calls` back-to-back calls, `rounds` rounds
    interleaved; median and range over rounds."""
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up (and the cuDNN plan's build)
        f()
        f()
    torch.cuda.synchronize()
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(device_ms(f, torch.device("cuda"), calls))
    return {k: {"ms": statistics.median(v), "min": min(v), "max": max(v)} for k, v in times.items()}


def merge(o1, l1, o2, l2):
    """Two partial attentions over disjoint keys -> one; o (1, H, T, D), l (1, H, T) log-sum-exp."""
    l1, l2 = l1.reshape(*o1.shape[:3], 1).float(), l2.reshape(*o2.shape[:3], 1).float()
    m = torch.maximum(l1, l2)
    w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
    return ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(o1.dtype)


def cudnn(q, k, v, causal):
    """(out, lse) from torch's cuDNN attention op."""
    r = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False)
    return r[0], r[1]


def flash(q, k, v, causal):
    r = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal)
    return r[0], r[1]


def attention(out: dict) -> None:
    """Part 1, per (heads, tokens): the second chunk of a 50/50 split every way, and the baselines."""
    rows = []
    for hq, hkv in ((32, 8), (16, 4)):  # llama3-8b's heads at tp 1 and tp 2
        for s in (2048, 4096, 8192):
            rows += shape_rows(hq, hkv, s)
            torch.cuda.empty_cache()
    out["attention"] = rows


def shape_rows(hq: int, hkv: int, s: int) -> list[dict]:
    g = torch.Generator(device="cuda").manual_seed(s)
    q = torch.randn(1, hq, s, 128, device="cuda", dtype=DT, generator=g)  # (1, Hq, S, D)
    k = torch.randn(1, hkv, s, 128, device="cuda", dtype=DT, generator=g)  # (1, Hkv, S, D)
    v = torch.randn(1, hkv, s, 128, device="cuda", dtype=DT, generator=g)
    h = s // 2
    q2 = q[:, :, h:]  # the second chunk's queries (1, Hq, S/2, D)
    kr, vr = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)  # (1, Hq, S, D)
    ref = F.scaled_dot_product_attention(q.float(), kr.float(), vr.float(), is_causal=True)[:, :, h:]
    rows = []
    cands = {
        "isotune chunk_attention (its pick)": lambda: chunk_attention(q2, k, v, h, s),
        "lower-right bias (before)": lambda: F.scaled_dot_product_attention(
            q2, k, v, attn_mask=causal_lower_right(s - h, s), enable_gqa=True
        ),
        "flash causal (non-square)": lambda: flash(q2, kr, vr, True)[0],
        "cudnn causal (non-square), gqa": lambda: cudnn(q2, k, v, True)[0],
        "cudnn causal (non-square), repeat": lambda: cudnn(q2, kr, vr, True)[0],
        "cudnn 2 calls + merge, gqa": lambda: merge(
            *cudnn(q2, k[:, :, :h], v[:, :, :h], False), *cudnn(q2, k[:, :, h:], v[:, :, h:], True)
        ),
        "cudnn 2 calls + merge, repeat": lambda: merge(
            *cudnn(q2, kr[:, :, :h], vr[:, :, :h], False), *cudnn(q2, kr[:, :, h:], vr[:, :, h:], True)
        ),
        "flash 2 calls + merge": lambda: merge(
            *flash(q2, kr[:, :, :h], vr[:, :, :h], False), *flash(q2, kr[:, :, h:], vr[:, :, h:], True)
        ),
        "efficient lower-right (forced)": lambda: torch.ops.aten._efficient_attention_forward(
            q2.transpose(1, 2), kr.transpose(1, 2), vr.transpose(1, 2), None, None, None, None, None,
            0.0, 2, False
        )[0].transpose(1, 2),
    }  # fmt: skip
    base = {
        "unsplit causal, default": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
        "first chunk causal, default": lambda: F.scaled_dot_product_attention(
            q[:, :, :h], k[:, :, :h], v[:, :, :h], is_causal=True, enable_gqa=True
        ),
    }  # fmt: skip
    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):

        def forced(be=be):
            with sdpa_kernel([be]):
                return F.scaled_dot_product_attention(q, kr, vr, is_causal=True)

        base[f"unsplit causal, {name} only"] = forced
    ok = {}
    for name, f in list(cands.items()):
        try:
            err = (f().float() - ref).abs().max().item()
            ok[name] = err
        except Exception as e:  # noqa: BLE001 - a kernel that refuses the shape is a finding
            print(f"  {hq}/{hkv} heads, {s}: {name}: refused: {str(e).splitlines()[0][:150]}")
            cands.pop(name)
    for name, f in list(base.items()):
        try:
            f()
        except Exception as e:  # noqa: BLE001
            print(f"  {hq}/{hkv} heads, {s}: {name}: refused: {str(e).splitlines()[0][:150]}")
            base.pop(name)
    t = timed(base | cands)
    for name, r in t.items():
        row = {"heads": f"{hq}/{hkv}", "tokens": s, "variant": name, **r, "max_err": ok.get(name)}
        rows.append(row)
        err = "" if row["max_err"] is None else f"  err {row['max_err']:.4f}"
        print(f"  {hq}/{hkv} heads, {s:5d} tok: {name:36s} {r['ms']:.3f} ms ({r['min']:.3f}..{r['max']:.3f}){err}")
    return rows


def host(out: dict) -> None:
    """Part 2: the host's cost to issue one eager layer of llama3-8b at tp 1, op by op."""
    from isotune.commands.doctor.measure import build
    from isotune.engine.timing import run_layer0

    add = torch.zeros(16, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(2000):
        add.add_(1.0)
    bare = (time.perf_counter() - t0) / 2000 * 1e6
    torch.cuda.synchronize()
    print(f"  a bare add_ on a 16-element tensor: {bare:.1f} us of host per launch")
    rep = {"bare_launch_us": bare}
    from isotune.engine.layers import rms_norm

    xn, wn = torch.randn(1024, 4096, device="cuda", dtype=DT), torch.ones(4096, device="cuda", dtype=DT)
    for rnd in range(3):  # interleaved: the host's time per call, 200 calls (few kernels: the queue never fills)
        for name, fn in (("casts", old_norm), ("no casts", rms_norm)):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(200):
                fn(xn, wn, 1e-5)
            us = (time.perf_counter() - t0) / 200 * 1e6
            rep.setdefault(f"norm_host_us_{name}", []).append(us)
            print(f"  round {rnd}: RMSNorm ({name}): {us:.1f} us of host per call")
    m = build("llama3-8b", 1, "bfloat16", 2048, "cuda")
    x = torch.zeros(1024, m.spec.hidden, dtype=DT, device="cuda")  # (T, hidden)
    with torch.inference_mode():
        for bounds in ([0, 1024], [0, 512, 1024]):
            for _ in range(5):
                run_layer0(m, x, bounds)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(50):
                run_layer0(m, x, bounds)
            issue = (time.perf_counter() - t0) / 50 * 1e3
            torch.cuda.synchronize()
            print(
                f"  {len(bounds) - 1} chunk(s): {issue:.3f} ms of host per layer (50 back-to-back, queue not drained)"
            )
            rep[f"issue_ms_{len(bounds) - 1}"] = issue
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(50):
            run_layer0(m, x, [0, 512, 1024])
        prof.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
        print(s.getvalue()[-6000:])
        rep["cprofile"] = s.getvalue()[-8000:]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
            for _ in range(10):
                run_layer0(m, x, [0, 512, 1024])
        torch.cuda.synchronize()
        table = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=48)
        print(table)
        rep["ops"] = table
    out["host"] = rep


def old_norm(x, weight, eps):
    """rms_norm as it was before: x cast to fp32 and back around torch's norm."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def prefills(out: dict) -> None:
    """Part 3: whole prefills of llama3-8b (2 layers, bf16, tp 1) with the engine as it was
    (later chunks through torch's lower-right bias, RMSNorm's casts) and as it is, rounds
    interleaved in a shuffled order, timed with CUDA events around each prefill as a run sees it."""
    import functools
    import random

    from isotune.commands.doctor.measure import build
    from isotune.core.chunking import chunk_bounds
    from isotune.core.stats import paired_change
    from isotune.engine import attention
    from isotune.engine.executor import prefill
    from isotune.engine.fused import EAGER, LayerOps

    now = attention._chunk_attention_cuda
    before_ops = LayerOps(norm=old_norm, rope=EAGER.rope, swiglu=EAGER.swiglu)
    m = build("llama3-8b", 2, "bfloat16", 8192, "cuda")
    rows = []
    with torch.inference_mode():
        for s in (1024, 2048, 4096, 8192):
            ids = torch.randint(0, m.spec.vocab, (s,), device="cuda")
            for k in (1, 2, 4):
                bounds = chunk_bounds(s, [1 / k] * k, 64)
                times: dict[str, list[float]] = {"before": [], "after": []}
                for rep in range(9):
                    order = ["before", "after"]
                    random.Random(rep).shuffle(order)
                    for name in order:
                        old = name == "before"
                        attention._chunk_attention_cuda = functools.partial(now, how="sdpa") if old else now
                        m.ops = before_ops if old else EAGER
                        torch.cuda.synchronize()
                        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        a.record()
                        prefill(m, ids, bounds)
                        b.record()
                        b.synchronize()
                        times[name].append(a.elapsed_time(b))
                attention._chunk_attention_cuda, m.ops = now, EAGER
                before, after = times["before"][1:], times["after"][1:]  # the first round warms up
                c = paired_change(before, after)
                row = {"tokens": s, "chunks": k, "before_ms": statistics.median(before)}
                row |= {"after_ms": statistics.median(after), "change": c.estimate, "low": c.low, "high": c.high}
                rows.append(row)
                print(
                    f"  {s:5d} tokens, {k} chunk(s): {row['before_ms']:.3f} -> {row['after_ms']:.3f} ms, "
                    f"{c.estimate:+.1%} (95% CI {c.low:+.1%}..{c.high:+.1%})"
                )
    out["prefills"] = rows


def run_parts(parts: dict) -> None:
    """`script OUT.json [part ...]`: each part named (all where none is) fills OUT.json, which is
    rewritten after every part, so a call stopped midway keeps what was measured. A part that
    fails is recorded with its traceback and the others still run."""
    path = sys.argv[1]
    out: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(),
        "cudnn": torch.backends.cudnn.version(),
    }
    print(out)
    for name in sys.argv[2:] or parts:
        part = parts[name]
        print(f"== {name}")
        t0 = time.perf_counter()
        try:
            part(out)
        except Exception:  # noqa: BLE001 - the other part still runs
            out[f"{name}_error"] = traceback.format_exc()
            print(out[f"{name}_error"])
        print(f"== {name}: {time.perf_counter() - t0:.1f} s")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    run_parts({"attention": attention, "host": host, "prefills": prefills})
