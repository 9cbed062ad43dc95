"""The elementwise steps of a layer (RMSNorm, RoPE, SwiGLU), eager or compiled.

Eager, each is a handful of small kernels (RMSNorm alone is six), and on a GPU every launch
costs the host a few microseconds: at short chunks the GPU waits on the host, and a split, which
multiplies the launches by its chunk count, measures slower than it is. `torch.compile` fuses
each step into one kernel. The GEMMs and attention stay as they are (cuBLAS and the SDPA kernels
are already one launch each). Eager stays the default and the reference: compiling costs
seconds up front (reported), which a short run never earns back.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from isotune.engine.layers import apply_rope, rms_norm, swiglu

if TYPE_CHECKING:
    from isotune.engine.model import TPModel


@dataclass(frozen=True)
class LayerOps:
    norm: object  # (x (T, hidden), or (T, heads, head_dim) for q/k norms; weight; eps) -> the same shape
    rope: object  # (qk (T, Hq+Hkv, D), cos, sin_signed (T, 1, D)) -> rotated
    swiglu: object  # (T, 2F) -> (T, F)
    compiled: bool = False


EAGER = LayerOps(norm=rms_norm, rope=apply_rope, swiglu=swiglu)


def compiled_ops() -> LayerOps:
    # dynamic shapes: one kernel for every chunk length, not a recompile per length (a search
    # tries dozens); a one-token step (decode) gets its own, as size 1 is specialised
    def fuse(fn):
        return torch.compile(fn, dynamic=True, fullgraph=True)

    return LayerOps(norm=fuse(rms_norm), rope=fuse(apply_rope), swiglu=fuse(swiglu), compiled=True)


WARM_TOKENS = 37  # a length equal to no model dimension: one that did would be specialised on


@torch.inference_mode()
def compile_model(model: TPModel, decode: bool) -> float:
    """Switch `model` to compiled steps and compile them now, through the model's own attention
    and MLP (so they see the strides and offsets real chunks have: slices of the fused QKV
    output, RoPE tables and caches at a prefix), for a first chunk, a later one and, when it
    will `decode`, a one-token step; no timed prefill pays for it. The cache rows written here
    are rewritten by every prefill before it reads them. Returns the seconds compiling took."""
    t0 = time.perf_counter()
    model.ops = compiled_ops()
    t = min(WARM_TOKENS, max(2, (model.max_len - 1) // 2))
    x = torch.zeros(2 * t, model.spec.hidden, dtype=model.dtype, device=model.device)  # (2T, hidden)
    # chunks are views of one residual stream; a decode step's one token is a tensor of its own
    one = torch.zeros(1, model.spec.hidden, dtype=model.dtype, device=model.device)  # (1, hidden)
    steps = [(x[:t], 0), (x[t:], t)] + ([(one, 2 * t)] if decode else [])
    for chunk, start in steps:
        if start + chunk.shape[0] <= model.max_len:
            model.attn(0, chunk, start)
            model.mlp(0, chunk)
    return time.perf_counter() - t0


def say_compiled(model: TPModel, is_main: bool) -> None:
    """One line on stderr (rank 0) saying what --compile cost, so a user can weigh it."""
    if is_main and model.compile_s is not None:
        print(
            f"note: compiled RMSNorm, RoPE and SwiGLU in {model.compile_s:.1f} s (--compile; "
            "eager is the default and the reference)",
            file=sys.stderr,
        )
