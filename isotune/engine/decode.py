"""Greedy decoding after a prefill, over the rank's KV cache: one-token, one-chunk forwards
through the executor, or (`--cuda-graphs`) replays of one captured CUDA graph (engine.graphed)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from isotune.core.schedule import build_schedule
from isotune.engine import dist
from isotune.engine.executor import prefill
from isotune.engine.graphed import StaticDecoder
from isotune.engine.model import TPModel


@torch.inference_mode()
def greedy_decode(
    model: TPModel,
    last_hidden: torch.Tensor,
    start: int,
    steps: int,
    stop: frozenset[int] = frozenset(),
    on_token: Callable[[int], None] | None = None,
    graphs: bool = False,
) -> list[int]:
    """Greedy tokens after a prefill whose last residual is `last_hidden` (1, hidden): at most
    `steps`, ending early after a token in `stop` (it is returned too). Each step is a one-token,
    one-chunk forward over the KV cache; `on_token` sees each token as soon as it is chosen.
    Every rank computes the same replicated logits, so every rank stops at the same step.
    `graphs` (CUDA): the steps replay one captured CUDA graph (engine.graphed)."""
    if graphs:
        return _graphed_decode(model, last_hidden, start, steps, stop, on_token)
    ops = build_schedule(model.spec.layers, 1)
    out: list[int] = []
    h = last_hidden
    for step in range(steps):
        token = int(model.logits(model.final_norm(h)).argmax(-1)[-1])
        out.append(token)
        if on_token is not None:
            on_token(token)
        if token in stop or step + 1 == steps:
            break
        ids = torch.tensor([token], device=model.device)
        h = prefill(model, ids, [0, 1], ops, start_pos=start + step)[-1:]  # (1, hidden)
    return out


def prepare_graphs(model: TPModel, start: int) -> None:
    """Capture the decode step's CUDA graph now (outside any timing), at position `start`; the
    row it writes there is rewritten by the first real step before anything reads it. If any
    rank could not capture, every rank runs the steps eagerly (mixed captured and eager
    collectives across ranks would not line up), and rank 0 says why in one line."""
    if getattr(model, "decoder", None) is not None:
        return
    decoder = model.decoder = StaticDecoder(model)
    decoder.set(0, start)
    why = decoder.capture()
    failed = dist.max_across([0.0 if why is None else 1.0], model.device)[0]
    if failed:
        decoder.graph = None
        decoder.why = why or "another rank could not capture"
        rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        if rank0:
            print(f"note: --cuda-graphs: decode steps run without a graph ({decoder.why})", file=sys.stderr)


def _graphed_decode(model: TPModel, last_hidden, start: int, steps: int, stop, on_token) -> list[int]:
    """greedy_decode's steps as replays of the model's captured CUDA graph (prepare_graphs)."""
    out: list[int] = []
    token = int(model.logits(model.final_norm(last_hidden)).argmax(-1)[-1])
    for step in range(steps):
        out.append(token)
        if on_token is not None:
            on_token(token)
        if token in stop or step + 1 == steps:
            break
        prepare_graphs(model, start + step)  # (a no-op when it was prepared before timing)
        model.decoder.set(token, start + step)
        token = int(model.decoder.replay().argmax(-1)[0])
    return out
