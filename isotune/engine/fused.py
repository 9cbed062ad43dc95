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

from isotune.engine.layers import rms_norm, rope_qk, swiglu

if TYPE_CHECKING:
    from isotune.engine.model import TPModel


@dataclass(frozen=True)
class LayerOps:
    norm: object  # (x (T, hidden), weight, eps) -> (T, hidden)
    rope_qk: object  # (q (T, Hq, D), k (T, Hkv, D), cos, sin) -> both rotated
    swiglu: object  # (T, 2F) -> (T, F)
    compiled: bool = False


EAGER = LayerOps(norm=rms_norm, rope_qk=rope_qk, swiglu=swiglu)


def compiled_ops() -> LayerOps:
    # dynamic shapes: one kernel for every chunk length, not a recompile per length (a search
    # tries dozens); a one-token step (decode) gets its own, as size 1 is specialised
    def fuse(fn):
        return torch.compile(fn, dynamic=True, fullgraph=True)

    return LayerOps(norm=fuse(rms_norm), rope_qk=fuse(rope_qk), swiglu=fuse(swiglu), compiled=True)


@torch.inference_mode()
def compile_model(model: TPModel, tokens: int, decode: bool) -> float:
    """Switch `model` to compiled steps and compile them now, on its own shapes at `tokens`
    tokens (and at one token when it will `decode`), so no timed prefill pays for it. Returns
    the seconds compiling took."""
    t0 = time.perf_counter()
    ops = compiled_ops()
    spec, w = model.spec, model.w.layers[0]
    for t in (max(2, tokens), 1) if decode else (max(2, tokens),):
        x = torch.zeros(t, spec.hidden, dtype=model.dtype, device=model.device)  # (T, hidden)
        ops.norm(x, w.attn_norm, spec.norm_eps)
        q = torch.zeros(t, model.shard.q_heads, spec.head_dim, dtype=model.dtype, device=model.device)
        k = torch.zeros(t, model.shard.kv_heads, spec.head_dim, dtype=model.dtype, device=model.device)
        ops.rope_qk(q, k, model.cos[:t], model.sin[:t])
        ops.swiglu(torch.zeros(t, w.w_gate_up.shape[0], dtype=model.dtype, device=model.device))  # (T, 2F)
    model.ops = ops
    return time.perf_counter() - t0


def say_compiled(model: TPModel, is_main: bool) -> None:
    """One line on stderr (rank 0) saying what --compile cost, so a user can weigh it."""
    if is_main and model.compile_s is not None:
        print(
            f"note: compiled RMSNorm, RoPE and SwiGLU in {model.compile_s:.1f} s (--compile; "
            "eager is the default and the reference)",
            file=sys.stderr,
        )
