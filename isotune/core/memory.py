"""What one rank needs in memory to hold its shard and run a prefill, estimated from the spec
alone (nothing is allocated), so a model too big for the machine is refused before launch with
both numbers instead of dying to the out-of-memory killer a minute later. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from isotune.core.shard import shard_for
from isotune.core.spec import ModelSpec

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GIB = 1024**3
# a torch process with a process group, before any weights (measured RSS on CPU ranks is
# ~0.3-0.4 GiB; a CUDA context takes about as much on the device)
RUNTIME_BYTES = int(0.4 * GIB)


@dataclass(kw_only=True)
class MemoryNeed:
    weights: int  # this rank's shard plus the replicated embedding / LM head
    kv_cache: int  # preallocated K and V for max_len positions of each slot
    activations: int  # the largest live intermediates of one prefill
    loading: int  # transient while loading: a full tensor read before it is sliced and cast
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.loading + self.runtime

    def summary(self) -> str:
        return (
            f"{gib(self.total)} (weights {gib(self.weights)}, KV cache {gib(self.kv_cache)}, "
            f"activations and loading {gib(self.activations + self.loading)})"
        )


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def rank_need(spec: ModelSpec, tp: int, dtype: str, max_len: int, prefill_tokens: int, slots: int = 1) -> MemoryNeed:
    """Bytes the most loaded rank (rank 0: shards are even) needs for `spec` at `tp`, its KV
    cache holding `slots` sequences of `max_len` positions."""
    b = DTYPE_BYTES[dtype]
    s = shard_for(spec, tp, 0)
    d, h = spec.head_dim, spec.hidden
    qkv_rows = (s.q_heads + 2 * s.kv_heads) * d
    per_layer = qkv_rows * h + h * s.q_heads * d + 3 * s.ffn * h + 2 * h + (qkv_rows if spec.qkv_bias else 0)
    per_layer += (s.q_heads + s.kv_heads) * d if spec.qk_norm else 0  # the per-head q/k norm weights
    embeddings = spec.vocab * h * (1 if spec.tied_embeddings else 2)
    weights = (spec.layers * per_layer + embeddings + h) * b
    kv_cache = 2 * spec.layers * s.kv_heads * max_len * d * b * slots
    # one chunk of the prompt at a time is live per op; the MLP's gate/up output and its SwiGLU
    # dominate, then qkv, the residual stream and the norm's output, and the fp32 logits
    t = prefill_tokens
    activations = t * (3 * s.ffn + qkv_rows + 4 * h) * b + spec.vocab * 4 * 2
    # a checkpoint's slice is read in its own dtype (up to float32) and then cast: the largest
    # slice, twice; synthetic weights are drawn per shard in the target dtype, on the rank's
    # device: the gate and up shards before they are fused, or q/k/v (a row-parallel shard
    # before its transposed copy is smaller than either)
    if spec.checkpoint is None:
        loading = max(2 * s.ffn, qkv_rows) * h * b
    else:
        loading = 2 * max(spec.vocab * h, s.ffn * h, qkv_rows * h) * 4
    return MemoryNeed(weights=weights, kv_cache=kv_cache, activations=activations, loading=loading)
