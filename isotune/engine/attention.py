"""Causal attention of one chunk over the prefix this rank already holds: the heart of ISO's
compute. Each rank holds whole heads, so a later chunk reads the K/V of earlier chunks from its
own cache: a full rectangle over the prefix and a causal square over itself, merged by their
log-sum-exps (on CPU, and on GPUs where cuDNN runs the square), or one call whose causal mask is
the lower-right one (FlashAttention-2). Which kernel a shape gets on a GPU is engine.kernels.

Shapes: q (1, Hq, T, D) for a chunk of T tokens at positions start..end-1; caches
(1, Hkv, max_len, D) that already hold the chunk's own K/V.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from isotune.engine import kernels


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
    flash's answer, so pass how="sdpa" with it on CPU tensors. Which kernel: engine.kernels."""
    from torch.nn.attention.bias import causal_lower_right

    t = end - start
    k, v = k_cache[:, :, :end], v_cache[:, :, :end]  # (1, Hkv, end, D)
    groups = q.shape[1] // k.shape[1]
    square_cudnn, flash = kernels.kernels_for(q, k_cache) if native_gqa is None else (False, native_gqa)
    if start > 0 and t > 1:
        how = how or kernels.later_chunk(q, start, t, square_cudnn, flash)
        if how == "cudnn":
            return _two_calls(_attend_cudnn, q, k_cache, v_cache, start, end)
        if how == "flash":  # the caller's own check (kernels.kernels_for) stands in for SDPA's per-call one
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, True)[0]
    native = groups > 1 and flash
    if groups > 1 and not native:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (1, Hq, end, D)
    if start == 0 or t == 1:  # the whole causal square, or one query that sees every key
        return F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=native)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t, end), enable_gqa=native)
