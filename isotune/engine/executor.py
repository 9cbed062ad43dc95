"""Run an ISO op list on one rank: the prefill (decoding after it is engine.decode).

Compute ops run on the current stream in list order. A comm op issues
`all_reduce(async_op=True)` on the partial sum its producer left (NCCL runs it on its own
stream; gloo on its own thread) and nothing waits for it until a compute op that depends on it
starts: only then is the handle waited and the reduced sum added to that chunk's residual.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch

from isotune.core.pack import Seq, check_pack, chunk_pieces
from isotune.core.schedule import ATTN, COMM, MLP, Op, build_schedule, final_comms
from isotune.engine import dist
from isotune.engine.model import TPModel
from isotune.engine.recorder import NO_RECORDER, Recorder

# The prefill's modes. FULL runs the real prefill. COMPUTE_ONLY skips the all-reduces (wrong
# values, real compute time); COMM_ONLY skips the compute and all-reduces zero buffers of the
# real sizes. (Not the op kinds of core.schedule, COMPUTE and COMM: a mode picks which kinds run.)
FULL, COMPUTE_ONLY, COMM_ONLY = "full", "compute only", "comm only"


@torch.inference_mode()
def prefill(
    model: TPModel,
    ids: torch.Tensor,
    bounds: list[int],
    ops: list[Op] | None = None,
    start_pos: int = 0,
    mode: str = FULL,
    trace: list[dict] | None = None,
    pack: list[Seq] | None = None,
) -> torch.Tensor:
    """Forward `ids` (S,) at positions start_pos.. through all layers, chunked at `bounds`
    (relative to the prompt, [0, ..., S]). Returns the final residual stream (S, hidden),
    before the final norm, and fills the KV cache for those positions. `trace`, when given,
    receives one event per op with its true start and end (see Recorder).
    `pack`: `ids` holds several sequences (core.pack), each at its own positions and slot
    (start_pos is then unused); the bounds cut the packed stream."""
    if pack is not None:
        check_pack(pack, model.slots, model.max_len, len(ids))
    elif start_pos + len(ids) > model.max_len:  # past the cache, writes would land nowhere, silently
        raise ValueError(f"positions up to {start_pos + len(ids)} do not fit the KV cache of {model.max_len}")
    if ops is None:
        ops = build_schedule(model.spec.layers, len(bounds) - 1)
    x = model.embed(ids)  # (S, hidden), replicated
    xs = [x[a:b] for a, b in pairwise(bounds)]  # views: chunk residuals (T_c, hidden)
    compute = _compute(model, xs, bounds, start_pos, mode, pack)
    reduce = _skip if mode == COMPUTE_ONLY else dist.all_reduce_async
    rec = Recorder(model.device) if trace is not None else NO_RECORDER
    partial: dict[int, torch.Tensor] = {}  # op index -> its (T_c, hidden) partial sum
    handles: dict[int, object] = {}  # comm op index -> its all-reduce in flight (None: nothing flies)

    def land(i: int) -> None:
        """Wait for all-reduce i and add the reduced sum to its chunk's residual."""
        handle = handles.pop(i)
        if handle is not None:
            handle.wait()
            rec.landed(i)
        xs[ops[i].chunk].add_(partial.pop(i))

    for i, op in enumerate(ops):
        if op.kind == COMM:  # reduce the producer's partial sum; nothing waits for it yet
            partial[i] = partial.pop(op.deps[0])
            rec.start(i)
            handles[i] = reduce(partial[i])
            rec.comm(i, handles[i])
        else:  # land the all-reduces this op reads, then compute it
            for d in op.deps:
                if ops[d].kind == COMM:
                    land(d)
            rec.start(i)
            partial[i] = compute(op)
            rec.end(i)
    for i in final_comms(ops):
        land(i)
    if trace is not None:
        trace.extend(rec.events(ops))
    return x


def _skip(t: torch.Tensor) -> None:
    return None


def _compute(
    model: TPModel, xs: list[torch.Tensor], bounds: list[int], start_pos: int, mode: str, pack: list[Seq] | None
) -> Callable[[Op], torch.Tensor]:
    """op -> the op's partial sum (T_c, hidden)."""
    if mode == COMM_ONLY:  # one zero buffer per stage and chunk, of the real size
        zeros = {(stage, c): torch.zeros_like(xc) for stage in (ATTN, MLP) for c, xc in enumerate(xs)}
        return lambda op: zeros[op.stage, op.chunk]
    # where each chunk's attention starts: a position (one prompt), or its pieces with their RoPE
    # rows (a pack), gathered once here rather than in every layer
    if pack is None:
        at = [start_pos + b for b in bounds[:-1]]
    else:
        at = [model.packed_chunk(pieces) for pieces in chunk_pieces(pack, bounds)]

    def compute(op: Op) -> torch.Tensor:
        if op.stage == ATTN:
            return model.attn(op.layer, xs[op.chunk], at[op.chunk])
        return model.mlp(op.layer, xs[op.chunk])

    return compute
