"""An analytic profile: what `isotune profile` would measure, computed from a hardware catalog
entry (core.hardware) for a model, TP size and dtype, in the Profile schema the cost model,
`search --objective model`, `show` and `bench --profile` already read. Pure Python.

Per layer and rank, for a chunk of q query tokens after p prefix tokens:
  GEMMs      max(2·q·W / (peak · GEMM_EFFICIENCY), W·bytes / (HBM · HBM_EFFICIENCY))
             W = this rank's weights of the op: each chunk reads them once, so short chunks are
             memory-bound and a split pays for its extra weight reads
  attention  max(4·Hq·D·q·(p + q/2) / (peak · ATTENTION_EFFICIENCY), K/V bytes / HBM)
             q·(p + q/2): the causal (query, key) pairs
  elementwise  the norms, RoPE, SwiGLU, cache writes and residual adds: bytes / HBM
  all-reduce latency + 2(n-1)/n · bytes / busbw  (nccl-tests' definition of bus bandwidth)
  while an all-reduce runs, compute slows by channels / (SMs - channels): NCCL's CTAs hold SMs
On a `cpu` entry the rates are measured, not peaks, so no efficiency factor applies.
"""

from __future__ import annotations

from isotune import __version__
from isotune.core.errors import BadInput
from isotune.core.fit import interp
from isotune.core.hardware import Hardware, hardware_names, load_hardware
from isotune.core.profile import CostFit, Profile
from isotune.core.shard import check_tp, shard_for
from isotune.core.spec import ModelSpec

# Achieved vs peak, stated once, each with its reason. Round figures, not fitted to any result.
GEMM_EFFICIENCY = 0.70  # cuBLAS bf16 GEMMs of LLM shapes: 70-80% of dense peak on A100/H100; the low end
HBM_EFFICIENCY = 0.80  # streaming kernels reach 80-90% of the HBM/GDDR peak; the low end
# FlashAttention-2's forward pass: 50-73% of peak on A100 (Dao 2023, arXiv 2307.08691); about 35%
# on H100, where it cannot use Hopper's asynchronous tensor cores (FlashAttention-3, arXiv
# 2407.08608). Ada taken as Ampere. On Hopper torch's SDPA runs a causal prefill on cuDNN
# instead, measured on one H200 (isotune's engine, torch 2.11, 2026-11-26) at 39-61% of dense
# peak for 2k-8k-token prompts: 0.35 is kept because it is what an engine's end-to-end compute
# shows (TokenWeave's 8xH100 measurement, within 9% from 4k tokens, docs/results.md), not a kernel alone.
ATTENTION_EFFICIENCY = {"ampere": 0.50, "ada": 0.50, "hopper": 0.35}
TABLE_TOKENS = sorted({n for e in range(4, 18) for n in (2**e, 3 * 2 ** (e - 1))})  # 16 .. 131072
BYTES = {"bfloat16": 2, "float16": 2}


def analytic_profile(hw: Hardware, spec: ModelSpec, tp: int, dtype: str) -> Profile:
    if dtype not in BYTES:
        raise BadInput(f"--dtype {dtype}: analytic profiles model bfloat16 or float16 (what GPUs serve in)")
    check_tp(spec, tp)
    ar, ar_note = hw.allreduce_for(tp)
    c = _Costs(hw, spec, tp, BYTES[dtype])
    latency_ms, ms_per_mb = _allreduce_line(ar, tp)
    ch, sms = hw.link["nccl_channels"].value, hw.gpu["sm_count"].value
    slowdown = hw.extra["compute_slowdown"].value if "compute_slowdown" in hw.extra else ch / max(1.0, sms - ch)
    fit = CostFit(
        attn=[0.0, 0.0, 0.0],
        mlp=[0.0, 0.0],
        latency_ms=latency_ms,
        ms_per_mb=ms_per_mb,
        compute_slowdown=slowdown,
        attn_table=[[q, c.attn_ms(q, 0)] for q in TABLE_TOKENS],
        attn_ms_per_pair=c.per_pair_ms,
        mlp_table=[[t, c.mlp_ms(t)] for t in TABLE_TOKENS],
        allreduce_table=_allreduce_table(ar, tp),
    )
    # the summary lines (schema fields) through two table points
    fit.attn = [0.0, interp(fit.attn_table, 1024) / 1024, c.per_pair_ms]
    fit.mlp = [0.0, interp(fit.mlp_table, 1024) / 1024]
    return Profile(
        model={"name": spec.name, "fingerprint": spec.fingerprint(), "hidden": spec.hidden, "layers": spec.layers},
        topology={
            "tp": tp,
            "backend": "gloo" if hw.arch == "cpu" else "nccl",
            "device": f"{hw.name} (analytic)",
            "device_count": tp,
            "interconnect": hw.kind,
            "hosts": 1,
            "dtype": dtype,
            "hardware": hw.name,
        },
        software={"isotune": __version__},
        fit=fit,
        source="model",
        assumptions=c.assumptions(ar, ar_note, slowdown),
    )


def _rate(entry, efficiency: float):
    """tokens -> FLOP/s: a measured curve by chunk size where the entry has one (interpolated,
    flat beyond its ends), else its one figure; times `efficiency`."""
    if entry.points:
        pts = sorted(entry.points)
        return lambda t: interp(pts, min(max(t, pts[0][0]), pts[-1][0])) * 1e12 * efficiency
    return lambda t: entry.value * 1e12 * efficiency


def _allreduce_line(ar, tp: int) -> tuple[float, float]:
    """(latency ms, ms per MB) of one all-reduce: the small-message time plus 2(n-1)/n of the
    bytes at the large-message bus bandwidth; where the entry measured bus bandwidth by message
    size, the least-squares line through those times instead (a prefill's messages are 1-100 MB,
    where a link seldom reaches its large-message rate)."""
    if tp == 1:
        return 0.0, 0.0
    if not ar.points or len(ar.points) < 2:
        return ar.latency_us / 1e3, 2 * (tp - 1) / tp / ar.busbw_gb_s
    xs, ys = zip(*_measured_ms(ar, tp), strict=True)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return max(0.0, my - slope * mx), max(0.0, slope)


def _allreduce_table(ar, tp: int) -> list[list[float]] | None:
    """[[MB, ms], ...] where the entry measured bus bandwidth by message size: the cost model
    reads between those points rather than off the line through them. It starts at the entry's
    small-message latency (0 MB), so a message below the smallest measured one is not costed by
    extending a noisy first segment, and never falls with size: a measurement where a bigger
    message came out faster is noise, and would let a split save communication."""
    if tp == 1 or not ar.points or len(ar.points) < 2:
        return None
    table, most = [], 0.0
    for mb, ms in [(0.0, ar.latency_us / 1e3), *_measured_ms(ar, tp)]:
        most = max(most, ms)
        table.append([mb, most])
    return table


def _measured_ms(ar, tp: int) -> list[tuple[float, float]]:
    """(MB, ms) of one all-reduce at each size the entry measured: 2(n-1)/n of the bytes at that
    size's bus bandwidth (1 GB/s = 1 MB/ms), by size."""
    return [(b / 1e6, b / 1e6 * 2 * (tp - 1) / tp / bw) for b, bw in sorted(ar.points)]


class _Costs:
    """One rank's per-layer op costs on `hw`, in ms."""

    def __init__(self, hw: Hardware, spec: ModelSpec, tp: int, nbytes: int):
        self.hw, self.spec, self.b = hw, spec, nbytes
        s = shard_for(spec, tp, 0)
        d, h = spec.head_dim, spec.hidden
        self.hq, self.hkv, self.ffn = s.q_heads, s.kv_heads, s.ffn
        self.w_attn = h * (s.q_heads + 2 * s.kv_heads) * d + s.q_heads * d * h  # QKV + O elements
        self.w_mlp = 3 * h * s.ffn  # gate, up, down
        # bytes per token the elementwise steps move: norm (read x, write h), RoPE on q and k,
        # cache writes, residual add (read two, write one); SwiGLU reads 2F and writes F
        self.elem_attn = (2 * h + 2 * (s.q_heads + s.kv_heads) * d + 2 * s.kv_heads * d + 3 * h) * nbytes
        if spec.qk_norm:  # Qwen3's per-head q/k norm reads and writes q and k once more
            self.elem_attn += 2 * (s.q_heads + s.kv_heads) * d * nbytes
        self.elem_mlp = (2 * h + 3 * s.ffn + 3 * h) * nbytes
        measured = hw.arch == "cpu"  # rates measured on the host: already achieved, not peaks
        tflops = hw.gpu["bf16_dense_tflops"]
        self.gemm = _rate(tflops, 1.0 if measured else GEMM_EFFICIENCY)
        att = hw.extra.get("attention_tflops")
        self.attn = _rate(att, 1.0) if att else _rate(tflops, ATTENTION_EFFICIENCY.get(hw.arch, 0.35))
        self.hbm = hw.gpu["hbm_gb_s"].value * 1e9 * (1.0 if measured else HBM_EFFICIENCY)
        # the elementwise steps: their minimal bytes at the memory rate (fused, as --compile
        # makes them), unless the entry measured what the eager steps reach
        elem = hw.extra.get("elementwise_gb_s")
        self.elem_rate = elem.value * 1e9 if elem else self.hbm
        # a long prefix runs the attention kernel at its best measured rate
        self.per_pair_ms = 4 * s.q_heads * d / max(self.attn(t) for t in TABLE_TOKENS) * 1e3

    def attn_ms(self, q: int, p: int) -> float:
        gemm = max(2 * q * self.w_attn / self.gemm(q), self.w_attn * self.b / self.hbm)
        kv = 2 * self.hkv * self.spec.head_dim * (p + q) * self.b  # K and V read once
        att = max(4 * self.hq * self.spec.head_dim * q * (p + q / 2) / self.attn(q), kv / self.hbm)
        return (gemm + att + q * self.elem_attn / self.elem_rate) * 1e3

    def mlp_ms(self, t: int) -> float:
        gemm = max(2 * t * self.w_mlp / self.gemm(t), self.w_mlp * self.b / self.hbm)
        return (gemm + t * self.elem_mlp / self.elem_rate) * 1e3

    def assumptions(self, ar, ar_note: str | None, slowdown: float) -> list[str]:
        hw = self.hw
        eff = (
            "measured rates (no efficiency factor)"
            if hw.arch == "cpu"
            else (
                f"GEMMs at {GEMM_EFFICIENCY:.0%} of {hw.gpu['bf16_dense_tflops'].value:g} dense bf16 TFLOPS, "
                f"attention at {ATTENTION_EFFICIENCY.get(hw.arch, 0.35):.0%} ({hw.arch}), "
                f"memory at {HBM_EFFICIENCY:.0%} of {hw.gpu['hbm_gb_s'].value:g} GB/s"
            )
        )
        out = [
            f"source: analytic, from the catalog entry {hw.name} ({hw.description})",
            f"compute: {eff}; each chunk reads its weights once (short chunks are memory-bound)",
            "attention: causal pairs q·(p + q/2), flash-style (no score matrix in memory)",
            (
                f"all-reduce: the curve through {hw.name}'s tp {ar.tp} bus bandwidth measured at "
                f"{len(ar.points or [])} message sizes, read between them (sourced in its catalog entry)"
                if ar.points and len(ar.points) >= 2
                else f"all-reduce: {ar.latency_us:g} µs + 2(n-1)/n · bytes / {ar.busbw_gb_s:g} GB/s bus bandwidth "
                f"(the tp {ar.tp} figures of {hw.name}, sourced in its catalog entry)"
            ),
            f"compute slows by {slowdown:.1%} while an all-reduce runs "
            + ("(measured)" if "compute_slowdown" in hw.extra else
               f"({hw.link['nccl_channels'].value:g} NCCL channels of {hw.gpu['sm_count'].value:g} SMs)"),
            "no host lane: on CPU ranks the host's time is the compute itself; ranks in lockstep"
            if hw.arch == "cpu" else
            "no host lane: launches assumed hidden, as in an engine that graphs its prefill (isotune's eager "
            "engine took 0.27 ms of host time to issue a layer chunk of llama3-8b on an H200, where its GPU ran "
            "a 256-token chunk's layer in 0.28 ms: shorter chunks wait on the host there, and at tp n the "
            "GPU's share shrinks about n-fold); ranks in lockstep",
        ]  # fmt: skip
        return out + ([ar_note] if ar_note else [])


def catalog_links() -> dict:
    """Every catalog entry as an emulated link (core.link.parse_link): name -> (tp -> (latency
    ms, ms per MB, [[MB, ms], ...] or None, source)), the same all-reduce the analytic profiles
    cost, read lazily (an entry is loaded only when asked for)."""

    def at(name: str):
        def link(tp: int):
            hw = load_hardware(name)
            ar, note = hw.allreduce_for(tp)
            latency_ms, ms_per_mb = _allreduce_line(ar, tp)
            table = _allreduce_table(ar, tp)
            source = f"catalog {name}, all-reduce at tp {ar.tp}" + (f" ({note})" if note else "")
            return latency_ms, ms_per_mb, table, source

        return link

    return {name: at(name) for name in hardware_names()}
