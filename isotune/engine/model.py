"""One rank's slice of a Llama-family model: the compute steps the executor schedules, and how
a rank builds it (its shard's weights, its KV cache).

`attn` and `mlp` each return this rank's *partial* output (a row-parallel projection's partial
sum); the executor all-reduces it and adds it to the residual. The model knows nothing of
process groups.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from isotune.core.errors import BadInput
from isotune.core.pack import Piece
from isotune.core.shard import Shard, shard_for
from isotune.core.spec import ModelSpec
from isotune.core.versions import minor
from isotune.engine.attention import chunk_attention
from isotune.engine.fused import EAGER, compiled_ops
from isotune.engine.layers import rms_norm, rope_inv_freq, rope_tables
from isotune.engine.memory import check_device_memory
from isotune.engine.rank import DistInfo  # only its rank, world size and device: no process-group code here
from isotune.engine.weights import ModelWeights, load_weights

# a cache value no real K/V holds: a row read before it is written swamps the output. Finite, so
# that attention over the whole cache with a mask (the graphed decode step) weighs unwritten rows
# by exactly 0 (a NaN there would survive the zero weight).
POISON = 1e4

# Older torch computes wrong numbers here, silently: its CPU flash attention reads grouped K/V
# heads (GQA) as garbage before 2.9 (measured on 2.8.0: errors of 1e37), and its gloo process
# group can deadlock when destroyed before 2.8 (pytorch/pytorch#154976).
MIN_TORCH = (2, 9)


def check_torch(version: str | None = None) -> None:
    """Refuse a torch older than MIN_TORCH, in one line, before any weight is built."""
    version = version or torch.__version__
    if minor(version) < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise BadInput(
            f"torch {version} is too old for isotune (its CPU attention and gloo shutdown are broken before "
            f"{need}): pip install 'torch>={need}'"
        )


@dataclass(frozen=True)
class OneTokenEach:
    """A decode step of several sequences (every piece one token): where each row's K/V goes,
    and which cached keys each row sees, so the rows attend in one call, not one call each."""

    slots: torch.Tensor  # (B,) long: each row's cache slot
    positions: torch.Tensor  # (B,) long: each row's position in its sequence
    contiguous: bool  # slots are 0..B-1 in order: the caches are read as a view, not gathered
    keys: int  # cached keys the call reads: the longest sequence's
    mask: torch.Tensor  # (B, 1, 1, keys) bool: row b sees keys 0..positions[b]


@dataclass(frozen=True)
class PackedChunk:
    """A chunk of a packed forward as attention needs it: its pieces (core.pack) and the RoPE
    rows of their positions, gathered once per forward, not once per layer."""

    pieces: tuple[Piece, ...]
    cos: torch.Tensor  # (T, 1, head_dim)
    sin: torch.Tensor
    one_token_each: OneTokenEach | None = None


class TPModel:
    def __init__(
        self,
        spec: ModelSpec,
        shard: Shard,
        weights: ModelWeights,
        max_len: int,
        dtype: torch.dtype,
        device,
        slots: int = 1,
    ):
        self.spec, self.shard, self.w = spec, shard, weights
        self.dtype, self.device = dtype, torch.device(device)
        self.max_len, self.slots = max_len, slots
        inv = rope_inv_freq(spec.head_dim, spec.rope_theta, spec.rope_scaling)
        self.cos, self.sin = rope_tables(max_len, inv, dtype, device)  # (max_len, 1, head_dim), sin signed
        # The KV cache is preallocated, a slot per sequence a pack may hold; chunks write their
        # K/V in place, never concatenate.
        cache_shape = (spec.layers, slots, shard.kv_heads, max_len, spec.head_dim)
        self.k_cache = torch.zeros(cache_shape, dtype=dtype, device=device)
        self.v_cache = torch.zeros(cache_shape, dtype=dtype, device=device)
        # views made once, not per chunk (each view op is host time on every layer of every
        # chunk): a slot's cache of a layer as attention reads it, and time-major as a chunk
        # writes it; k_layer/k_rows are slot 0's, the one a lone prompt uses
        self.k_slot = [[c[s : s + 1] for s in range(slots)] for c in self.k_cache.unbind(0)]  # (1, Hkv, L, D)
        self.v_slot = [[c[s : s + 1] for s in range(slots)] for c in self.v_cache.unbind(0)]
        self.k_slot_rows = [[c[0].transpose(0, 1) for c in layer] for layer in self.k_slot]  # (L, Hkv, D)
        self.v_slot_rows = [[c[0].transpose(0, 1) for c in layer] for layer in self.v_slot]
        self.k_layer, self.v_layer = [layer[0] for layer in self.k_slot], [layer[0] for layer in self.v_slot]
        self.k_rows, self.v_rows = [layer[0] for layer in self.k_slot_rows], [layer[0] for layer in self.v_slot_rows]
        self.heads = (shard.q_heads, shard.kv_heads)
        self.q_dim = shard.q_heads * spec.head_dim
        self.kv_dim = shard.kv_heads * spec.head_dim
        self.ops = EAGER  # the elementwise steps: eager, or compiled by compile_model below
        self.compile_s: float | None = None  # what compiling them took, when they were
        self.decoder = None  # --cuda-graphs: the captured decode step (engine.decode.prepare_graphs)
        self.seed = 0  # what its synthetic weights were drawn with; seeded prompts reuse it

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.w.embed)  # (T,) -> (T, hidden)

    def packed_chunk(self, pieces: tuple[Piece, ...]) -> PackedChunk:
        """A packed chunk's pieces with the RoPE rows of their positions, (T, 1, D) each."""
        if len(pieces) == 1:  # one sequence's rows: a slice of the tables, as for one prompt
            p = pieces[0]
            return PackedChunk(pieces=pieces, cos=self.cos[p.start : p.end], sin=self.sin[p.start : p.end])
        if all(p.tokens == 1 for p in pieces):  # a decode step: one gather, one attention call
            at = torch.tensor([p.start for p in pieces], device=self.device)  # (B,)
            slots = [p.slot for p in pieces]
            keys = max(p.end for p in pieces)
            mask = torch.arange(keys, device=self.device)[None, :] <= at[:, None]  # (B, keys)
            rows = OneTokenEach(
                slots=torch.tensor(slots, device=self.device),
                positions=at,
                contiguous=slots == list(range(len(slots))),
                keys=keys,
                mask=mask[:, None, None, :],  # (B, 1, 1, keys)
            )
            return PackedChunk(pieces=pieces, cos=self.cos[at], sin=self.sin[at], one_token_each=rows)
        cos = torch.cat([self.cos[p.start : p.end] for p in pieces])  # (T, 1, D)
        sin = torch.cat([self.sin[p.start : p.end] for p in pieces])
        return PackedChunk(pieces=pieces, cos=cos, sin=sin)

    def attn(self, layer: int, x: torch.Tensor, start: int | PackedChunk) -> torch.Tensor:
        """Partial attention output; x (T, hidden). `start`: the position of x's first row, x
        being one prompt's tokens start..start+T-1 in slot 0; or a packed chunk (packed_chunk),
        each sequence's rows attending to that sequence's cache slot alone."""
        w, d = self.w.layers[layer], self.spec.head_dim
        t = x.shape[0]
        h = self.ops.norm(x, w.attn_norm, self.spec.norm_eps)
        qkv = F.linear(h, w.wqkv, w.bqkv)  # (T, q_dim + 2*kv_dim)
        qk, v = qkv.split([self.q_dim + self.kv_dim, self.kv_dim], dim=-1)  # views
        qk = qk.view(t, -1, d)  # (T, Hq+Hkv, D)
        if w.qk_norm is not None:  # Qwen3: each head's q and k normed over D, before RoPE
            qk = self.ops.norm(qk, w.qk_norm, self.spec.norm_eps)
        if isinstance(start, int):  # one prompt: the path every unpacked prefill and decode step takes
            end = start + t
            qk = self.ops.rope(qk, self.cos[start:end], self.sin[start:end])  # (T, Hq+Hkv, D)
            q, k = qk.split(self.heads, dim=1)  # (T, Hq, D), (T, Hkv, D)
            self.k_rows[layer][start:end] = k  # in place
            self.v_rows[layer][start:end] = v.view(t, -1, d)
            out = chunk_attention(
                q.transpose(0, 1).unsqueeze(0),  # (1, Hq, T, D)
                self.k_layer[layer],  # (1, Hkv, max_len, D)
                self.v_layer[layer],
                start,
                end,
            )
        else:
            out = self._packed_attention(layer, qk, v.view(t, -1, d), start)
        out = out.squeeze(0).transpose(0, 1).reshape(t, self.q_dim)  # (T, q_dim)
        return F.linear(out, w.wo)  # (T, hidden) partial sum

    def _packed_attention(self, layer: int, qk: torch.Tensor, v: torch.Tensor, chunk: PackedChunk) -> torch.Tensor:
        """Attention of a packed chunk, piece by piece: each piece's rows at their own positions
        (RoPE), their K/V into their slot, their queries over that slot's keys up to them.
        qk (T, Hq+Hkv, D), v (T, Hkv, D) -> (1, Hq, T, D)."""
        q, k = self.ops.rope(qk, chunk.cos, chunk.sin).split(self.heads, dim=1)  # (T, Hq, D), (T, Hkv, D)
        if chunk.one_token_each is not None:
            return self._one_token_each(layer, q, k, v, chunk.one_token_each)
        outs = []
        for p in chunk.pieces:
            rows = slice(p.offset, p.offset + p.tokens)
            self.k_slot_rows[layer][p.slot][p.start : p.end] = k[rows]  # in place
            self.v_slot_rows[layer][p.slot][p.start : p.end] = v[rows]
            outs.append(
                chunk_attention(
                    q[rows].transpose(0, 1).unsqueeze(0),  # (1, Hq, T_p, D)
                    self.k_slot[layer][p.slot],  # (1, Hkv, max_len, D)
                    self.v_slot[layer][p.slot],
                    p.start,
                    p.end,
                )
            )
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (1, Hq, T, D)

    def _one_token_each(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: OneTokenEach
    ) -> torch.Tensor:
        """A decode step's B rows, each of its own sequence: their K/V into their slots at their
        positions, then one masked attention call over the slots' caches (a view where the slots
        are 0..B-1, else gathered). q (B, Hq, D), k and v (B, Hkv, D) -> (1, Hq, B, D)."""
        kc, vc = self.k_cache[layer], self.v_cache[layer]  # (slots, Hkv, max_len, D)
        kc[rows.slots, :, rows.positions] = k  # in place; indices apart put B first: (B, Hkv, D)
        vc[rows.slots, :, rows.positions] = v
        b = len(rows.positions)
        if rows.contiguous:
            keys, values = kc[:b, :, : rows.keys], vc[:b, :, : rows.keys]  # (B, Hkv, keys, D) views
        else:
            keys, values = kc[:, :, : rows.keys][rows.slots], vc[:, :, : rows.keys][rows.slots]  # gathered
        # a group's query heads share one K/V head (query head h reads K/V head h // G), so they go
        # in as G query rows against it: SDPA's masked GPU kernels do not take enable_gqa, and its
        # math fallback would repeat the whole cache per step (as the graphed decode step does)
        hkv = k.shape[1]
        out = F.scaled_dot_product_attention(
            q.view(b, hkv, -1, q.shape[-1]),  # (B, Hkv, G, D)
            keys,
            values,
            attn_mask=rows.mask,  # (B, 1, 1, keys)
        )  # (B, Hkv, G, D)
        return out.reshape(b, -1, q.shape[-1]).transpose(0, 1).unsqueeze(0)  # (1, Hq, B, D)

    def fill_cache(self, value: float) -> None:
        """Overwrite every KV cache row. Checks that compare two prefills of one model fill it with
        a poison first (engine.model.POISON): else the first run's K/V, left in the cache, would
        stand in for rows a broken chunk never wrote, and the comparison would pass."""
        self.k_cache.fill_(value)
        self.v_cache.fill_(value)

    def kv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A layer's K and V caches as attention reads them, (1, Hkv, max_len, D) each."""
        return self.k_layer[layer], self.v_layer[layer]

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Partial MLP output; x (T, hidden) is the residual after attention."""
        w = self.w.layers[layer]
        h = self.ops.norm(x, w.mlp_norm, self.spec.norm_eps)
        return F.linear(self.ops.swiglu(F.linear(h, w.w_gate_up)), w.w_down)  # (T, hidden) partial sum

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.w.norm, self.spec.norm_eps)  # (T, hidden)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.w.lm_head).float()  # (T, vocab)


def build_model(
    spec: ModelSpec,
    info: DistInfo,
    dtype: torch.dtype,
    max_len: int,
    seed: int,
    compiled: bool = False,
    decode: bool = False,
    tp: int | None = None,
    slots: int = 1,
    prefill_tokens: int | None = None,
) -> TPModel:
    """This rank's shard of `spec` on its device, with a KV cache of `slots` sequences of
    `max_len` positions; its elementwise steps compiled when asked (for one-token steps too when
    it will `decode`), the seconds that took in `compile_s`."""
    check_torch()
    tp = tp or info.world  # a stand-in computes rank 0's shard of a larger TP size alone
    shard = shard_for(spec, tp, info.rank)
    check_device_memory(spec, tp, dtype, max_len, info.device, slots, prefill_tokens)  # before the first allocation
    weights = load_weights(spec, shard, dtype, info.device, seed)
    model = TPModel(spec, shard, weights, max_len, dtype, info.device, slots)
    model.seed = seed
    if compiled:
        model.compile_s = compile_model(model, decode)
    return model


def random_prompt(seq_len: int, vocab: int, seed: int) -> list[int]:
    """A seeded random prompt (timing does not depend on the token values), the same on every rank."""
    if seq_len < 1:
        raise BadInput(f"--seq-len {seq_len} must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (seq_len,), generator=gen).tolist()


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
