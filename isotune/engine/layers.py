"""Llama building blocks on one rank's shards: RMSNorm, RoPE, SwiGLU (attention over a chunk's
prefix is engine.attention). No process-group code: row-parallel projections return partial
sums and the executor decides when to all-reduce them.

Shapes: one request at a time, so activations are (T, hidden) with T the chunk's tokens;
caches are (1, kv_heads_local, max_len, head_dim) so the attention kernels see (B, H, T, D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm computed in fp32 and cast back before the weight, as the reference Llama does.
    torch's rms_norm is one op where the spelled-out form is six, each dispatched by the host for
    every chunk of every layer (on GPUs one fused kernel). It takes x in its own dtype: torch
    accumulates fp16/bf16 in fp32 and rounds once, bit for bit the result of casting x to fp32
    and back, without the two casts: on an H200 the call took the host 19 µs instead of 38."""
    return weight * F.rms_norm(x, (x.shape[-1],), eps=eps)  # (T, hidden)


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None) -> torch.Tensor:
    """Inverse frequencies (head_dim/2,), with linear or llama3 scaling applied."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv / factor
    # llama3: long wavelengths are scaled by `factor`, short ones kept, the band between blended.
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_ctx = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old_ctx / low, inv / factor, inv)
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    return torch.where(medium, blended, scaled)


def rope_tables(max_len: int, inv_freq: torch.Tensor, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables (max_len, 1, head_dim) in the rotate-half layout of HF
    checkpoints. sin's first half is negated so that rotate-half becomes one roll (apply_rope);
    the middle axis broadcasts over heads."""
    pos = torch.arange(max_len, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq)  # (max_len, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (max_len, head_dim)
    sign = torch.cat((-torch.ones_like(inv_freq), torch.ones_like(inv_freq)))  # (head_dim,)
    cos, sin = emb.cos(), emb.sin() * sign  # (max_len, head_dim)
    return cos.to(dtype=dtype, device=device)[:, None, :], sin.to(dtype=dtype, device=device)[:, None, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """x (T, H, D); cos, sin_signed (T, 1, D) from rope_tables. HF's x*cos + rotate_half(x)*sin,
    with rotate_half(x)*sin = cat(-x2, x1)*sin written as roll(x, D/2)*sin_signed: the same
    products bit for bit (a sign moves from one factor to the other), four ops where it was nine.
    Callers rotate a chunk's queries and keys in one call, as the heads of one (T, Hq+Hkv, D)
    view of the fused QKV output."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed  # (T, H, D)


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up (T, 2*F) from the fused projection -> SiLU(gate) * up (T, F)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
