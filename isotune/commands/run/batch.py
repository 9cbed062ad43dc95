"""Continuous batching for `run --prompts --max-seqs N` (rank side): many prompts at once, as a
serving engine runs them.

Every prompt arrives when the run starts. While cache slots are free and the token budget
(--max-batch-tokens) allows, waiting prompts are admitted and prefilled together as one pack
(core.pack), split by the plan's bucket for the pack's total tokens (or --chunks/--ratios).
Then every running sequence decodes one token in one forward, each at its own position in its
own slot. A sequence that stops frees its slot at once, and the next waiting prompts join at the
next step. Greedy, as the one-prompt path.

Every rank takes the same decisions from the same tokens (the logits are replicated), so no
rank needs telling; rank 0 keeps the clock (the collectives in every forward hold the ranks
within a step of each other) and prints each prompt's JSON line the moment it ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from isotune.core.chunking import chunk_bounds, chunk_sizes
from isotune.core.errors import BadInput
from isotune.core.pack import Seq
from isotune.core.plan import Plan, lookup, split_for
from isotune.core.schedule import build_schedule
from isotune.engine.executor import prefill
from isotune.engine.model import TPModel


@dataclass(kw_only=True)
class Batching:
    max_seqs: int  # cache slots: sequences running at once
    max_batch_tokens: int  # prompt tokens one pack may hold (a longer prompt runs alone)
    plan: Plan | None  # the pack's split: its bucket for the pack's total tokens
    ratios: list[float]  # without a plan: the split asked (--chunks/--ratios), [1.0] for none


@dataclass(kw_only=True)
class Running:
    index: int
    slot: int
    ids: list[int]
    admitted_ms: float
    pack: dict
    generated: list[int] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # ms since the run started, per token

    @property
    def position(self) -> int:
        """Where the next token's K/V goes: the prompt, then every token fed back so far."""
        return len(self.ids) + len(self.generated) - 1


def pack_split(cfg: Batching, total: int, align: int) -> tuple[list[int], str | None, list[str]]:
    """(bounds over the packed stream, the plan bucket used, notes) for a pack of `total` tokens."""
    notes: list[str] = []
    if cfg.plan is not None:
        ratios, notes = split_for(cfg.plan, total)
        name = lookup(cfg.plan, total)[0].span
    else:
        ratios, name = cfg.ratios, None
    try:
        return chunk_bounds(total, ratios, align), name, notes
    except BadInput:  # too few tokens for the split's chunks: unsplit, as one short prompt runs
        return [0, total], name, notes


@torch.inference_mode()
def run_batched(
    model: TPModel,
    cfg: Batching,
    prompts: list[list[int]],
    align: int,
    max_new: int,
    stop: frozenset[int],
    done: Callable[[int, dict], None],
    say: Callable[[str], None],
) -> None:
    """Run every prompt to its end; `done(index, record)` as each one ends (its generated ids,
    queue wait, time to first token from its arrival, the pack it was prefilled in)."""
    one_token = build_schedule(model.spec.layers, 1)
    said: set[str] = set()  # a plan's note about pack sizes, once each
    waiting = deque(range(len(prompts)))
    free = list(range(cfg.max_seqs))
    running: list[Running] = []
    t0 = time.perf_counter()

    def now() -> float:
        return (time.perf_counter() - t0) * 1e3

    def finish(r: Running) -> None:
        running.remove(r)
        free.append(r.slot)
        free.sort()
        span = r.stamps[-1] - r.stamps[0] if len(r.stamps) > 1 else 0.0
        done(
            r.index,
            {
                "generated_ids": r.generated,
                "generated_tokens": len(r.generated),
                "stopped": "eos" if r.generated and r.generated[-1] in stop else "max_new_tokens",
                "queue_ms": round(r.admitted_ms, 3),
                "ttft_ms": round(r.stamps[0], 3),  # from its arrival: the run's start
                "e2e_ms": round(r.stamps[-1], 3),  # its last token, from its arrival
                "decode_tok_s": round((len(r.generated) - 1) * 1e3 / span, 2) if span > 0 else None,
                "pack": r.pack,
            },
        )

    def take(r: Running, token: int) -> None:
        r.generated.append(token)
        r.stamps.append(now())
        if token in stop or len(r.generated) >= max_new:
            finish(r)

    while waiting or running:
        admitted = _admit(waiting, free, prompts, cfg.max_batch_tokens)
        if admitted:
            if len(admitted) == 1 and len(prompts[admitted[0]]) > cfg.max_batch_tokens:
                say(
                    f"note: prompt {admitted[0]} has {len(prompts[admitted[0]])} tokens, more than --max-batch-tokens "
                    f"{cfg.max_batch_tokens}: it is prefilled alone"
                )
            at = now()
            seqs = [Seq(slot=free.pop(0), start=0, tokens=len(prompts[i])) for i in admitted]
            ids = torch.tensor([t for i in admitted for t in prompts[i]], device=model.device)  # (total,)
            bounds, bucket, notes = pack_split(cfg, len(ids), align)
            for note in notes:
                if note not in said:
                    said.add(note)
                    say(f"note: a pack of {len(ids)} tokens: {note.removeprefix('warning: ')}")
            x = prefill(model, ids, bounds, pack=seqs)  # (total, hidden)
            pack = {"prompts": len(admitted), "tokens": len(ids), "chunk_tokens": chunk_sizes(bounds),
                    "plan_bucket": bucket, "prefill_ms": None}  # fmt: skip
            lasts = torch.tensor([s.tokens for s in seqs], device=x.device).cumsum(0) - 1  # each one's last row
            tokens = model.logits(model.final_norm(x[lasts])).argmax(-1).tolist()  # (B,)
            pack["prefill_ms"] = round(now() - at, 3)
            new = [
                Running(index=i, slot=s.slot, ids=prompts[i], admitted_ms=at, pack=pack)
                for i, s in zip(admitted, seqs, strict=True)
            ]
            running += new
            for r, token in zip(new, tokens, strict=True):
                take(r, token)
        if not running:
            continue
        batch = sorted(running, key=lambda r: r.slot)
        ids = torch.tensor([r.generated[-1] for r in batch], device=model.device)  # (B,) fed back
        seqs = [Seq(slot=r.slot, start=r.position, tokens=1) for r in batch]
        h = prefill(model, ids, [0, len(batch)], one_token, pack=seqs)  # (B, hidden)
        tokens = model.logits(model.final_norm(h)).argmax(-1).tolist()
        for r, token in zip(batch, tokens, strict=True):
            take(r, token)


def _admit(waiting: deque, free: list[int], prompts: list[list[int]], budget: int) -> list[int]:
    """The waiting prompts to prefill now, in arrival order: while a slot is free and the pack's
    tokens stay within the budget; the first one always (a prompt over the budget runs alone)."""
    taken: list[int] = []
    room = budget
    while waiting and len(taken) < len(free):
        n = len(prompts[waiting[0]])
        if taken and n > room:
            break
        taken.append(waiting.popleft())
        room -= n
    return taken
