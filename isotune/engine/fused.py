"""The elementwise steps of a layer (RMSNorm, RoPE, SwiGLU), eager or compiled.

Eager, each is a handful of small kernels (RMSNorm alone is six), and on a GPU every launch
costs the host a few microseconds: at short chunks the GPU waits on the host, and a split, which
multiplies the launches by its chunk count, measures slower than it is. `torch.compile` fuses
each step into one kernel. The GEMMs and attention stay as they are (cuBLAS and the SDPA kernels
are already one launch each). Eager stays the default and the reference: compiling costs
seconds up front (reported), which a short run never earns back. The model compiles its own
(engine.model.compile_model), through its real attention and MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from isotune.engine.layers import apply_rope, rms_norm, swiglu


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
