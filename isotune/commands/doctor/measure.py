"""The measurements `isotune doctor` makes on one device, in this process: what the machine is,
whether ISO equals the unsplit prefill, what chunking costs with no communication to hide,
whether the host or the GPU sets the pace, and what CUDA graphs do to decoding. Each returns
plain rows for the report."""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections import defaultdict
from itertools import pairwise

import torch

from isotune.core.chunking import chunk_bounds
from isotune.core.spec import load_spec
from isotune.core.stats import interval, paired_change
from isotune.core.target import Target
from isotune.engine import dist
from isotune.engine.attention import chunk_attention
from isotune.engine.executor import COMPUTE_ONLY, prefill
from isotune.engine.launch import build_for
from isotune.engine.model import POISON, TPModel, random_prompt
from isotune.engine.rank import DistInfo, single
from isotune.engine.timing import issue_and_run_ms, kernels_issued, run_layer0, time_prefills
from isotune.engine.topology import gpu_indices, group_link, plain, smi

# ISO sums in another order than the unsplit prefill. In float32 that moves a logit by ~1e-7 of
# its size, so a tight limit (relative past logits of 100) leaves an off-by-one far outside it.
# A 16-bit prefill already rounds its logits by up to a few ulps of the largest (0.74 on a
# trained checkpoint's logits of up to 85, measured): there ISO is held against the float32
# logits, and may stray from them at most this many times as far as the unsplit prefill does.
F32_REL = 1e-5
F32_FLOOR = 100.0  # logits below this size get the absolute limit 1e-3
HALF_FACTOR = 2.0


def environment() -> dict:
    """Versions, devices and links: what every number in the report was measured on."""
    env = {
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "cuda build": torch.version.cuda or "none (CPU build)",
        "host": f"{platform.node()}, {os.cpu_count()} CPU cores, {platform.machine()}",
    }
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        props = [torch.cuda.get_device_properties(i) for i in range(n)]
        env["gpus"] = ", ".join(
            f"{p.name} ({p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs)" for p in props
        )
        version = torch.cuda.nccl.version()  # a tuple in torch 2.x; an int in older builds
        env["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        env["link among all GPUs"] = group_link("cuda", True, gpu_indices(list(range(n))))
        env["topology"] = plain(smi("topo", "-m") or "nvidia-smi topo -m: unavailable")
    else:
        env["gpus"] = "none visible"
    return env


@torch.inference_mode()
def unsplit_logits(model: TPModel, seq_len: int, seed: int = 0) -> torch.Tensor:
    """The unsplit prefill's logits of the seeded prompt (S, vocab), in float32."""
    ids = torch.tensor(random_prompt(seq_len, model.spec.vocab, seed), device=model.device)
    model.fill_cache(POISON)  # before every prefill: no run may read another's K/V
    return model.logits(model.final_norm(prefill(model, ids, [0, seq_len])))


@torch.inference_mode()
def iso_equals_baseline(
    model: TPModel, seq_len: int, align: int, seed: int = 0, reference: torch.Tensor | None = None
) -> list[dict]:
    """Per split: the largest logit difference from the unsplit prefill (`max_diff`), the error
    that is judged (`err`: from the float32 `reference` in a 16-bit dtype, which needs one; from
    the unsplit prefill in float32), the unsplit prefill's own error (`base_err`), the limit and
    whether the split is within it."""
    ids = torch.tensor(random_prompt(seq_len, model.spec.vocab, seed), device=model.device)
    base = unsplit_logits(model, seq_len, seed)  # (S, vocab) fp32
    dtype = str(model.dtype).removeprefix("torch.")
    if dtype == "float32":
        ref, base_err = base, 0.0
        tol = F32_REL * max(base.abs().max().item(), F32_FLOOR)
    elif reference is None:
        raise ValueError(f"ISO in {dtype} is judged against the float32 logits: pass them as reference")
    else:
        ref, base_err = reference, (base - reference).abs().max().item()
        tol = HALF_FACTOR * base_err
    rows = []
    for ratios in ([0.5, 0.5], [0.3, 0.7], [0.25] * 4, [0.125] * 8):
        model.fill_cache(POISON)
        out = model.logits(model.final_norm(prefill(model, ids, chunk_bounds(seq_len, ratios, align))))  # (S, vocab)
        diff, err = (out - base).abs().max().item(), (out - ref).abs().max().item()
        ok = math.isfinite(err) and math.isfinite(tol) and err <= tol  # an overflow is never within
        split = "/".join(f"{r:g}" for r in ratios)
        rows.append({"split": split, "max_diff": diff, "err": err, "base_err": base_err, "tol": tol, "ok": ok})
    return rows


@torch.inference_mode()
def chunking_overhead(
    model: TPModel, info: DistInfo, seq_lens: list[int], align: int, repeats: int, seed: int = 0
) -> list[dict]:
    """Compute-only prefills split evenly into 2, 4 and 8 chunks against the unsplit one, timed
    interleaved: with nothing to hide, this is what a split costs (smaller GEMMs, more launches,
    attention in pieces), the price any overlap must win back."""
    rows = []
    for s in seq_lens:
        ids = torch.tensor(random_prompt(s, model.spec.vocab, seed), device=info.device)
        variants = {"1": ([0, s], COMPUTE_ONLY)}
        for k in (2, 4, 8):
            if s // k >= align:
                variants[str(k)] = (chunk_bounds(s, [1 / k] * k, align), COMPUTE_ONLY)
        samples: dict[str, list[float]] = {}
        time_prefills(model, info, ids, variants, warmup=1, repeats=repeats, samples=samples)
        base = interval(samples["1"])
        for k, ts in samples.items():
            if k != "1":
                change = paired_change(samples["1"], ts)
                rows.append(
                    {"seq_len": s, "chunks": int(k), "unsplit_ms": base.estimate, "split_ms": interval(ts).estimate}
                    | {"change": change.estimate, "low": change.low, "high": change.high}
                )
    return rows


@torch.inference_mode()
def launch_bound(model: TPModel, seq_len: int, align: int, seed: int = 0) -> list[dict]:
    """Per chunk count: one layer's compute (each chunk's attention and MLP, layer 0) three ways,
    in ms: `host_ms`, the host's time to issue it; `gpu_ms`, the GPU's time to run it with every
    kernel queued beforehand (engine.timing.issue_and_run_ms: the GPU alone); and `prefill_ms`,
    what the layer took between its CUDA events inside a traced compute-only prefill, the pace a
    run sees, which cannot tell the two apart. Where host_ms is the larger the GPU waits on
    launches (see --compile)."""
    ids = torch.tensor(random_prompt(seq_len, model.spec.vocab, seed), device=model.device)
    x = torch.zeros(seq_len, model.spec.hidden, dtype=model.dtype, device=model.device)  # (S, hidden)
    rows = []
    for k in (1, 2, 4, 8):
        if seq_len // k < align:
            continue
        bounds = chunk_bounds(seq_len, [1 / k] * k, align)
        prefill(model, ids, bounds, mode=COMPUTE_ONLY)  # warm-up
        events: list[dict] = []
        prefill(model, ids, bounds, mode=COMPUTE_ONLY, trace=events)
        paced = defaultdict(float)
        for e in events:
            if e["kind"] == "compute":
                paced[e["layer"]] += e["end_ms"] - e["start_ms"]

        host, gpu = issue_and_run_ms(lambda b=bounds: run_layer0(model, x, b), model.device)
        bound = "unknown" if gpu is None else "host" if host > gpu else "GPU"
        rows.append(
            {
                "chunks": k,
                "host_ms": host,
                "gpu_ms": gpu,
                "prefill_ms": sum(paced.values()) / len(paced),
                "bound": bound,
            }
        )
    return rows


@torch.inference_mode()
def chunking_parts(model: TPModel, seq_len: int, align: int) -> list[dict]:
    """Where a 2-way split's extra compute goes, in layer 0 at seq_len tokens: per part, its ms
    unsplit and split in two even chunks (engine.timing.issue_and_run_ms: on a GPU its own time
    with every kernel queued first, on CPU the op's time). The parts: the attention kernel alone
    (over the cache the attention op wrote), the rest of the attention op (norm, QKV and output
    projections, RoPE, cache writes) and the MLP. A part whose GPU time could not be separated
    is left out."""
    d, (hq, hkv) = model.spec.head_dim, model.heads
    x = torch.zeros(seq_len, model.spec.hidden, dtype=model.dtype, device=model.device)  # (S, hidden)
    # queries laid out as the attention op makes them: the first Hq heads of the rotated (S,
    # Hq+Hkv, D) queries and keys, transposed to (1, Hq, S, D)
    qk = torch.zeros(seq_len, hq + hkv, d, dtype=model.dtype, device=model.device)
    q = qk[:, :hq].transpose(0, 1).unsqueeze(0)

    def gpu_ms(step, spans) -> float | None:  # step(a, b) on every chunk a..b, issued as one call
        return issue_and_run_ms(lambda: [step(a, b) for a, b in spans], model.device)[1]

    op, kernel, mlp = {}, {}, {}  # chunk count -> GPU ms (None: not separable)
    for k in (1, 2):
        spans = list(pairwise(chunk_bounds(seq_len, [1 / k] * k, align)))
        op[k] = gpu_ms(lambda a, b: model.attn(0, x[a:b], a), spans)  # fills the cache the kernel reads
        kernel[k] = gpu_ms(lambda a, b: chunk_attention(q[:, :, a:b], *model.kv(0), a, b), spans)
        mlp[k] = gpu_ms(lambda a, b: model.mlp(0, x[a:b]), spans)
    rest = {k: op[k] - kernel[k] for k in (1, 2) if op[k] is not None and kernel[k] is not None}
    rows = []
    for part, by_k in (("attention kernel", kernel), ("attention, the rest", rest), ("MLP", mlp)):
        # the rest of attention is a difference of two minima: it can fall to 0
        if (by_k.get(1) or 0) > 0 and (by_k.get(2) or 0) > 0:
            rows.append({"part": part, "unsplit_ms": by_k[1], "split_ms": by_k[2], "change": by_k[2] / by_k[1] - 1})
    return rows


@torch.inference_mode()
def layer_kernels(model: TPModel, tokens: int) -> int | None:
    """The kernels one layer's compute issues for one chunk of `tokens` (engine.timing
    .kernels_issued; None on CPU). Call it after every timing a process will make."""
    x = torch.zeros(tokens, model.spec.hidden, dtype=model.dtype, device=model.device)  # (T, hidden)
    return kernels_issued(lambda: run_layer0(model, x, [0, tokens]), model.device)


@torch.inference_mode()
def decode_speed(model: TPModel, cache_lens: list[int], steps: int, repeats: int, seed: int = 0) -> list[dict]:
    """Per cache length: `steps` greedy tokens, eager steps against replays of one captured CUDA
    graph (run --cuda-graphs), timed interleaved in a shuffled order after a warm-up round. The
    graphed step attends over the whole cache (model.max_len positions, masked) where eager
    attends over the tokens so far, so short caches in a long model are where the graph can
    lose. Where capture fails (on CPU, for one) the static step runs eagerly: `graph` says
    which was timed. The model's decoder is dropped afterwards."""
    from isotune.engine.decode import greedy_decode, prepare_graphs

    rows = []
    try:
        for s in cache_lens:
            ids = torch.tensor(random_prompt(s, model.spec.vocab, seed), device=model.device)
            last = prefill(model, ids, [0, s])[-1:]  # (1, hidden); the cache holds 0..s-1
            prepare_graphs(model, s)  # captured once, outside the timing
            times: dict[str, list[float]] = {"eager": [], "graphed": []}
            tokens: dict[str, list[int]] = {}
            for rep in range(repeats + 1):
                order = list(times)
                random.Random(rep).shuffle(order)  # neither always runs first
                for name in order:
                    dist.synchronize(model.device)
                    t0 = time.perf_counter()
                    tokens[name] = greedy_decode(model, last, s, steps, graphs=name == "graphed")  # rows s..s+steps-2
                    dist.synchronize(model.device)
                    times[name].append(time.perf_counter() - t0)
            eager, graphed = times["eager"][1:], times["graphed"][1:]  # the first round warmed up
            change = paired_change(eager, graphed)
            first_diff = next((i for i, (a, b) in enumerate(zip(*tokens.values(), strict=True)) if a != b), None)
            rows.append(
                {"cache_tokens": s, "max_len": model.max_len, "tokens": steps, "graph": model.decoder.graph is not None}
                | {"eager_tok_s": steps / interval(eager).estimate, "graphed_tok_s": steps / interval(graphed).estimate}
                | {"change": change.estimate, "low": change.low, "high": change.high, "first_diff": first_diff}
            )
    finally:
        why = getattr(getattr(model, "decoder", None), "why", None)
        model.decoder = None  # its graph and memory pool go; a later capture starts afresh
    return [r | {"why": why} for r in rows]


def build(model: str, layers: int | None, dtype: str, max_len: int, device: str) -> TPModel:
    """A one-device model for the checks, built as the launch builds every rank's."""
    spec = load_spec(model, layers)
    target = Target(spec=spec, tp=1, dtype=dtype, device=device, max_len=max_len)
    return build_for(target, single(device))
