"""The ISO schedule as data: an ordered op list that the executor runs and the cost model
simulates. Pure Python (no torch), so what is predicted is exactly what runs.

Per layer l and chunk i there are four ops:
  attn(l,i)    compute: norm, QKV, RoPE, causal attention over K/V of chunks <= i, O-proj
  AR attn(l,i) comm:    all-reduce of attn's partial sums
  mlp(l,i)     compute: residual add, norm, gate/up, SiLU*mul, down
  AR mlp(l,i)  comm:    all-reduce of mlp's partial sums
Issue order is a wavefront: every chunk's attention (each one's all-reduce issued right after
it), then every chunk's MLP. While AR attn(l,i) is in flight the rank computes attn(l,i+1), and
so on. With one chunk this is the ordinary serial TP forward.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPUTE = "compute"
COMM = "comm"
ATTN = "attn"
MLP = "mlp"


@dataclass(frozen=True, kw_only=True)
class Op:
    kind: str  # COMPUTE | COMM
    stage: str  # ATTN | MLP
    layer: int
    chunk: int
    deps: tuple[int, ...]  # indices of earlier ops in the list that must finish first

    @property
    def name(self) -> str:
        prefix = "allreduce " if self.kind == COMM else ""
        return f"{prefix}{self.stage} L{self.layer} c{self.chunk}"


def build_schedule(layers: int, chunks: int) -> list[Op]:
    """The wavefront op list for `layers` layers and `chunks` chunks."""
    ops: list[Op] = []
    index: dict[tuple[str, str, int, int], int] = {}

    def add(kind: str, stage: str, layer: int, chunk: int, deps: list[tuple[str, str, int, int]]) -> None:
        index[(kind, stage, layer, chunk)] = len(ops)
        ops.append(Op(kind=kind, stage=stage, layer=layer, chunk=chunk, deps=tuple(index[d] for d in deps)))

    for layer in range(layers):
        for c in range(chunks):
            deps = []
            if layer > 0:
                deps.append((COMM, MLP, layer - 1, c))  # this chunk's layer input
            if c > 0:
                deps.append((COMPUTE, ATTN, layer, c - 1))  # prefix K/V, written by this rank
            add(COMPUTE, ATTN, layer, c, deps)
            add(COMM, ATTN, layer, c, [(COMPUTE, ATTN, layer, c)])
        for c in range(chunks):
            add(COMPUTE, MLP, layer, c, [(COMM, ATTN, layer, c)])
            add(COMM, MLP, layer, c, [(COMPUTE, MLP, layer, c)])
    return ops


def final_comms(ops: list[Op]) -> list[int]:
    """Indices of the last layer's MLP all-reduces: the prefill ends when they have landed."""
    last = max(op.layer for op in ops)
    return [i for i, op in enumerate(ops) if op.kind == COMM and op.stage == MLP and op.layer == last]
