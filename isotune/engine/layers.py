"""Llama building blocks on one rank's shards. No process-group code: row-parallel projections
return partial sums and the executor decides when to all-reduce them.

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
    every chunk of every layer (on GPUs one fused kernel, where torch has one); on CPU its result
    is bitwise the same."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)  # (T, hidden)


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


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (1,Hq,T,D), logsumexp (1,Hq,T) fp32) from the CPU flash kernel; GQA handled natively."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)


def _merge_lse(o1: torch.Tensor, l1: torch.Tensor, o2: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """Combine two softmax-attention results over disjoint key sets by their log-sum-exps."""
    # part 1's share e^l1 / (e^l1 + e^l2) is sigmoid(l1 - l2); one lerp blends the two (a third
    # cheaper than exp/logaddexp and two weighted sums, measured on the CPU flash outputs)
    w1 = torch.sigmoid(l1 - l2).unsqueeze(-1)  # (1, Hq, T, 1) fp32
    return torch.lerp(o2.float(), o1.float(), w1).to(o1.dtype)  # (1, Hq, T, D)


def chunk_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, start: int, end: int
) -> torch.Tensor:
    """Causal attention of the chunk's queries (positions start..end-1) over cached keys 0..end-1.

    q (1, Hq, T, D) with T = end - start; caches (1, Hkv, max_len, D) already hold this chunk.
    Only the lower-right causal triangle is computed: the prefix (keys < start) is a full
    rectangle, the chunk's own keys a square causal block; the two merge by log-sum-exp.
    """
    if q.device.type != "cpu":
        return _chunk_attention_cuda(q, k_cache, v_cache, start, end)
    if end - start == 1:  # decode: one query sees every cached key
        out, _ = _attend(q, k_cache[:, :, :end], v_cache[:, :, :end], causal=False)
        return out
    own_out, own_lse = _attend(q, k_cache[:, :, start:end], v_cache[:, :, start:end], causal=True)
    if start == 0:
        return own_out
    pre_out, pre_lse = _attend(q, k_cache[:, :, :start], v_cache[:, :, :start], causal=False)
    return _merge_lse(pre_out, pre_lse, own_out, own_lse)


def _chunk_attention_cuda(q, k_cache, v_cache, start: int, end: int, native_gqa: bool | None = None) -> torch.Tensor:
    """On GPUs SDPA's lower-right causal bias runs in the fused kernels without materialising a
    mask. Grouped K/V heads go to the kernel as they are (`enable_gqa`) where it reads them
    natively, flash attention in fp16/bf16: repeating them would copy the whole prefix x the
    group count for every chunk, a cost that grows with the chunk count and biases the search
    against splitting. Only where no such kernel applies (fp32's memory-efficient kernel) are
    they repeated. `native_gqa` forces the choice (tests)."""
    from torch.nn.attention.bias import causal_lower_right

    k, v = k_cache[:, :, :end], v_cache[:, :, :end]  # (1, Hkv, end, D)
    groups = q.shape[1] // k.shape[1]
    if native_gqa is None:
        native_gqa = groups > 1 and _flash_reads_gqa(q, k)
    if groups > 1 and not native_gqa:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (1, Hq, end, D)
    t = end - start
    if start == 0 or t == 1:  # the whole causal square, or one query that sees every key
        return F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=native_gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, end), enable_gqa=native_gqa)


_FLASH_GQA: dict[tuple, bool] = {}  # (device, dtype, Hq, Hkv, D) -> can flash attention take them


def _flash_reads_gqa(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether SDPA's flash kernel takes q (1, Hq, T, D) with k (1, Hkv, S, D) as grouped heads;
    asked once per shape family, not per call (every launch's host time counts, item 3)."""
    key = (q.device, q.dtype, q.shape[1], k.shape[1], q.shape[-1])
    if key not in _FLASH_GQA:
        from torch.backends.cuda import SDPAParams, can_use_flash_attention

        # asked without is_causal: flash refuses causal non-square shapes, and the lower-right
        # mask path (torch.nn.attention.bias) asks it the same way before running it causal
        _FLASH_GQA[key] = bool(can_use_flash_attention(SDPAParams(q, k, k, None, 0.0, False, True)))
    return _FLASH_GQA[key]


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up (T, 2*F) from the fused projection -> SiLU(gate) * up (T, F)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
