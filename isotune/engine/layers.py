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


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (1,Hq,T,D), logsumexp (1,Hq,T) fp32) from the CPU flash kernel; GQA handled natively."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal)


def _attend_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The same from torch's cuDNN attention (grouped K/V heads read natively); causal is the
    upper-left square only, so callers pass as many keys as queries when it is set."""
    r = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False)
    return r[0], r[1].reshape(q.shape[:3])  # cuDNN's log-sum-exp may carry a trailing 1


def _merge_lse(o1: torch.Tensor, l1: torch.Tensor, o2: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """Combine two softmax-attention results over disjoint key sets by their log-sum-exps."""
    # part 1's share e^l1 / (e^l1 + e^l2) is sigmoid(l1 - l2); one lerp blends the two (a third
    # cheaper than exp/logaddexp and two weighted sums, measured on the CPU flash outputs)
    w1 = torch.sigmoid(l1 - l2).unsqueeze(-1)  # (1, Hq, T, 1) fp32
    return torch.lerp(o2.float(), o1.float(), w1).to(o1.dtype)  # (1, Hq, T, D)


def _two_calls(attend, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, start: int, end: int):
    """A later chunk's attention as the prefix's full rectangle (keys < start) and its own square
    causal block, merged by log-sum-exp: for kernels whose causal mask is the upper-left one."""
    own_out, own_lse = attend(q, k_cache[:, :, start:end], v_cache[:, :, start:end], True)
    pre_out, pre_lse = attend(q, k_cache[:, :, :start], v_cache[:, :, :start], False)
    return _merge_lse(pre_out, pre_lse, own_out, own_lse)  # (1, Hq, T, D)


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
    if start == 0:
        return _attend(q, k_cache[:, :, :end], v_cache[:, :, :end], causal=True)[0]
    return _two_calls(_attend, q, k_cache, v_cache, start, end)


# The least work (FLOPs) of a later chunk's attention for which two cuDNN calls and a merge beat
# FlashAttention-2's one lower-right call, on GPUs where SDPA runs square causal prefills on cuDNN
# (Hopper and later). Measured on an H200 (torch 2.11, bf16, 50/50 splits, benchmarks/gpu_probe.py):
# FA2 runs at ~310 TFLOP/s there and cuDNN at ~600, so at 8192 tokens the merge took 1.02 ms
# where FA2 took 1.38 (32 of 8 heads) and 0.55 vs 0.74 (16 of 4); at 4096 tokens and 16 heads
# (5e10 FLOPs) they were even, the second call and the merge's kernels costing the host ~0.1 ms.
CUDNN_MERGE_MIN_FLOP = 2**36
# and the fewest prefix keys: cuDNN refuses one key (SDPA's own check says so, the direct call
# skips it), and a prefix this short is all but free on either kernel
CUDNN_MERGE_MIN_PREFIX = 64


def _chunk_attention_cuda(
    q, k_cache, v_cache, start: int, end: int, native_gqa: bool | None = None, how: str | None = None
) -> torch.Tensor:
    """On GPUs. Grouped K/V heads go to the kernel as they are where it reads them natively
    (flash and cuDNN in fp16/bf16): repeating them would copy the whole prefix x the group count
    for every chunk, a cost that grows with the chunk count and biases the search against
    splitting. Only where no such kernel applies (fp32's memory-efficient kernel) are they
    repeated. A later chunk (start > 0) needs the causal diagonal at the lower right, `how`:
    "cudnn", two cuDNN calls merged (_two_calls); "flash", FlashAttention-2, whose causal mask is
    the lower-right one; "sdpa", torch's lower-right bias, which picks a kernel per call (fp32).
    Chosen by shape where not given (for a later chunk; the first and a decode step have one way
    each). `native_gqa` and `how` force the choice (tests): a forced `native_gqa` also stands for
    flash's answer, so pass how="sdpa" with it on CPU tensors."""
    from torch.nn.attention.bias import causal_lower_right

    t = end - start
    k, v = k_cache[:, :, :end], v_cache[:, :, :end]  # (1, Hkv, end, D)
    groups = q.shape[1] // k.shape[1]
    square_cudnn, flash = _kernels(q, k_cache) if native_gqa is None else (False, native_gqa)
    if start > 0 and t > 1:
        work = 4 * t * (start + t / 2) * q.shape[1] * q.shape[-1]  # QK^T and PV over the kept triangle
        merge = square_cudnn and work >= CUDNN_MERGE_MIN_FLOP and start >= CUDNN_MERGE_MIN_PREFIX
        how = how or ("cudnn" if merge else "flash" if flash else "sdpa")
        if how == "cudnn":
            return _two_calls(_attend_cudnn, q, k_cache, v_cache, start, end)
        if how == "flash":  # the caller's own check (_kernels) stands in for SDPA's per-call one
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True)[0]
    native = groups > 1 and flash
    if groups > 1 and not native:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (1, Hq, end, D)
    if start == 0 or t == 1:  # the whole causal square, or one query that sees every key
        return F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=native)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, end), enable_gqa=native)


_KERNELS: dict[tuple, tuple[bool, bool]] = {}  # (device, dtype, Hq, Hkv, D) -> _kernels' answer


def _kernels(q: torch.Tensor, k_cache: torch.Tensor) -> tuple[bool, bool]:
    """(SDPA runs a square causal call on cuDNN, flash attention takes these heads as they are)
    for queries like q (1, Hq, T, D) over a cache like k_cache (1, Hkv, max_len, D). Asked once
    per shape family, not per call (every op's host time counts, item 3), and of a 1024-token
    square rather than the call at hand: a family's first call may be a one-token decode step
    or a compile warm-up, whose odd sizes a kernel may refuse."""
    key = (q.device, q.dtype, q.shape[1], k_cache.shape[1], q.shape[-1])
    if key not in _KERNELS:
        from torch.backends.cuda import SDPAParams, can_use_flash_attention
        from torch.nn.attention import SDPBackend

        hq, hkv, d = key[2:]
        qs = torch.empty(1, hq, 1024, d, dtype=q.dtype, device=q.device)  # (1, Hq, 1024, D)
        ks = torch.empty(1, hkv, 1024, d, dtype=q.dtype, device=q.device)  # (1, Hkv, 1024, D)
        square = torch._fused_sdp_choice(qs, ks, ks, None, 0.0, True, enable_gqa=hq != hkv)
        # asked without is_causal: flash refuses causal non-square shapes, and the lower-right
        # mask path (torch.nn.attention.bias) asks it the same way before running it causal
        flash = can_use_flash_attention(SDPAParams(qs, ks, ks, None, 0.0, False, True)) and d % 8 == 0
        _KERNELS[key] = (square == SDPBackend.CUDNN_ATTENTION.value, bool(flash))
    return _KERNELS[key]


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up (T, 2*F) from the fused projection -> SiLU(gate) * up (T, F)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up
