"""Which attention kernel a chunk gets on a GPU: asked of torch once per shape family, and the
crossover, measured, at which a later chunk's two cuDNN calls and their merge beat one
FlashAttention-2 call (engine.attention runs what is chosen here)."""

from __future__ import annotations

import torch

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


def later_chunk(q: torch.Tensor, start: int, t: int, square_cudnn: bool, flash: bool) -> str:
    """How a later chunk (T = t queries after `start` prefix keys) attends: "cudnn" (two cuDNN
    calls merged, where SDPA runs squares on cuDNN and the work pays for the second call),
    "flash" (FlashAttention-2's lower-right causal call) or "sdpa" (torch's bias, e.g. fp32)."""
    work = 4 * t * (start + t / 2) * q.shape[1] * q.shape[-1]  # QK^T and PV over the kept triangle
    merge = square_cudnn and work >= CUDNN_MERGE_MIN_FLOP and start >= CUDNN_MERGE_MIN_PREFIX
    return "cudnn" if merge else "flash" if flash else "sdpa"


_KERNELS: dict[tuple, tuple[bool, bool]] = {}  # (device, dtype, Hq, Hkv, D) -> kernels_for's answer


def kernels_for(q: torch.Tensor, k_cache: torch.Tensor) -> tuple[bool, bool]:
    """(SDPA runs a square causal call on cuDNN, flash attention takes these heads as they are)
    for queries like q (1, Hq, T, D) over a cache like k_cache (1, Hkv, max_len, D). Asked once
    per shape family, not per call (every op's host time counts), and of a 1024-token
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
