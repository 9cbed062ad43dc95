"""Megatron tensor-parallel sharding as data: which slice of each weight a rank holds.

QKV and gate/up are column-parallel (a rank holds whole heads / a block of FFN columns), O and
down are row-parallel (their outputs are partial sums to all-reduce). When TP exceeds the KV
head count, KV heads are replicated the way vLLM does: rank r uses KV head r // (tp / kv_heads).
Embedding, final norm and LM head are replicated. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from isotune.core.errors import BadInput
from isotune.core.spec import ModelSpec


@dataclass(frozen=True, kw_only=True)
class Shard:
    tp: int
    rank: int
    q_head_start: int
    q_heads: int  # query heads on this rank
    kv_head_start: int
    kv_heads: int  # KV heads on this rank (1 when replicated)
    ffn_start: int
    ffn: int  # FFN columns on this rank


def check_tp(spec: ModelSpec, tp: int) -> None:
    if tp < 1:
        raise BadInput(f"--tp {tp} must be at least 1")
    if spec.heads % tp:
        divisors = [str(d) for d in range(1, spec.heads + 1) if spec.heads % d == 0]
        some = ", ".join(divisors[:-1]) + f" or {divisors[-1]}" if len(divisors) > 1 else divisors[0]
        raise BadInput(f"--tp {tp} does not divide {spec.name}'s {spec.heads} query heads: use {some}")
    if tp <= spec.kv_heads and spec.kv_heads % tp:
        raise BadInput(f"--tp {tp} does not divide {spec.name}'s {spec.kv_heads} KV heads")
    if tp > spec.kv_heads and tp % spec.kv_heads:
        raise BadInput(
            f"--tp {tp} is not a multiple of {spec.name}'s {spec.kv_heads} KV heads, "
            "so they cannot be replicated evenly"
        )
    if spec.ffn % tp:
        raise BadInput(f"--tp {tp} does not divide {spec.name}'s FFN size {spec.ffn}")


def shard_for(spec: ModelSpec, tp: int, rank: int) -> Shard:
    check_tp(spec, tp)
    q_heads = spec.heads // tp
    if tp <= spec.kv_heads:
        kv_heads, kv_start = spec.kv_heads // tp, rank * (spec.kv_heads // tp)
    else:
        kv_heads, kv_start = 1, rank // (tp // spec.kv_heads)
    ffn = spec.ffn // tp
    return Shard(
        tp=tp,
        rank=rank,
        q_head_start=rank * q_heads,
        q_heads=q_heads,
        kv_head_start=kv_start,
        kv_heads=kv_heads,
        ffn_start=rank * ffn,
        ffn=ffn,
    )
