"""Decode steps with static shapes, replayed as a CUDA graph (`run --cuda-graphs`).

A one-token step launches a few dozen small kernels per layer, and on a GPU their launches,
not their work, set the decode speed. A CUDA graph replays them all with one launch, but only
if every shape and address stays fixed from step to step. So this step keeps the token and its
position in device tensors, writes the KV cache with `index_copy_` at that position, reads RoPE
rows by index, and attends over the whole cache with a mask of the positions written so far
(a K/V head's group of query heads as rows of one query, so the cache is never expanded).
Same math as the executor's decode; the step itself runs anywhere (the CPU tests check it
against the executor), the graph only on CUDA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from isotune.engine import dist

if TYPE_CHECKING:
    from isotune.engine.model import TPModel


class StaticDecoder:
    """Greedy one-token steps at a position held on the device: set(token, pos), then step()
    (or replay(), the captured graph of it) leaves the next token's logits in `self.logits`."""

    def __init__(self, model: TPModel):
        self.m = model
        dev = model.device
        self.token = torch.zeros(1, dtype=torch.long, device=dev)  # (1,)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)  # (1,)
        self.keys = torch.arange(model.max_len, device=dev)  # (max_len,) cache positions
        self.logits = torch.zeros(1, model.spec.vocab, dtype=torch.float32, device=dev)  # (1, vocab)
        self.graph = None
        self.why: str | None = None  # why no graph was captured, once capture was tried and failed

    def set(self, token: int, pos: int) -> None:
        self.token.fill_(token)
        self.pos.fill_(pos)

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        m = self.m
        x = m.embed(self.token)  # (1, hidden)
        for layer in range(m.spec.layers):
            x = x + _reduced(self._attn(layer, x))
            x = x + _reduced(m.mlp(layer, x))
        self.logits.copy_(m.logits(m.final_norm(x)))  # (1, vocab)
        return self.logits

    def _attn(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        m, d = self.m, self.m.spec.head_dim
        w = m.w.layers[layer]
        h = m.ops.norm(x, w.attn_norm, m.spec.norm_eps)
        qk, v = F.linear(h, w.wqkv, w.bqkv).split([m.q_dim + m.kv_dim, m.kv_dim], dim=-1)  # (1, *)
        cos, sin = m.cos.index_select(0, self.pos), m.sin.index_select(0, self.pos)  # (1, 1, D)
        qk = qk.view(1, -1, d)  # (1, Hq+Hkv, D)
        if w.qk_norm is not None:  # Qwen3, as TPModel.attn
            qk = m.ops.norm(qk, w.qk_norm, m.spec.norm_eps)
        q, k = m.ops.rope(qk, cos, sin).split(m.heads, dim=1)  # (1, Hq, D), (1, Hkv, D)
        m.k_rows[layer].index_copy_(0, self.pos, k)  # (max_len, Hkv, D) at pos
        m.v_rows[layer].index_copy_(0, self.pos, v.view(1, -1, d))
        seen = (self.keys <= self.pos)[None, None, None, :]  # (1, 1, 1, max_len): positions written
        # A group's query heads share one K/V head (query head h reads K/V head h // G), so they
        # go in as G query rows against it: no GQA expansion of the whole cache per step (SDPA's
        # masked kernels do not take enable_gqa, and its math fallback repeats the cache)
        out = F.scaled_dot_product_attention(
            q.view(1, m.shard.kv_heads, -1, d),  # (1, Hkv, G, D)
            m.k_layer[layer],  # (1, Hkv, max_len, D)
            m.v_layer[layer],
            attn_mask=seen,
        )  # (1, Hkv, G, D)
        return F.linear(out.reshape(1, m.q_dim), w.wo)  # (1, hidden) partial sum

    def capture(self) -> str | None:
        """Record step() as a CUDA graph (after warm-up steps on a side stream, as CUDA graphs
        require); the current token and position are re-run, which rewrites the same cache row.
        Returns why it could not be captured (the steps then run eagerly), or None."""
        if self.m.device.type != "cuda":
            return "CUDA graphs need a CUDA device"
        try:
            self._capture()
        except RuntimeError as e:  # e.g. a collective this torch/NCCL cannot capture
            self.graph = None
            return str(e).splitlines()[0] if str(e) else type(e).__name__
        return None

    def _capture(self) -> None:
        side = torch.cuda.Stream(self.m.device)
        side.wait_stream(torch.cuda.current_stream(self.m.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.step()
        torch.cuda.current_stream(self.m.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.step()

    def replay(self) -> torch.Tensor:
        if self.graph is None:  # capture failed: the same step, eagerly
            return self.step()
        self.graph.replay()
        return self.logits


def _reduced(t: torch.Tensor) -> torch.Tensor:
    """Sum the partial `t` across ranks, waited in stream order (a graph captures it so)."""
    handle = dist.all_reduce_async(t)
    if handle is not None:
        handle.wait()
    return t
