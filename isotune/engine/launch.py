"""The one launch protocol: `launch(job, target)` starts the target's ranks (engine.dist), each
rank builds its model once from the target, then runs `job.run(model, info)`.

A job is what a command sends to its ranks (a profile sweep, a search worker, a bench, a run
with its prompts): a picklable object with a `run(model, info) -> exit code` method; optionally
a `before_build(info)` run before the model is built, and an `interrupt_hint` said after
'interrupted' when Ctrl-C stops the ranks (by the spawning parent, or here where no parent is).
"""

from __future__ import annotations

import sys
from typing import Protocol

import torch

from isotune.core.target import Target
from isotune.engine import dist
from isotune.engine.model import TPModel, build_model, say_compiled
from isotune.engine.rank import DistInfo


class Job(Protocol):
    def run(self, model: TPModel, info: DistInfo) -> int: ...


def launch(job: Job, target: Target) -> int:
    """Run `job` on every rank of `target` (fitted: engine.target.fit_target); the exit code."""
    if target.max_len < 1:
        raise ValueError("launch needs a fitted target (engine.target.fit_target): it sets the KV cache's length")
    ranks = dist.Ranks(
        tp=target.processes,
        device=target.device,
        threads=target.threads,
        comm_ctas=target.comm_ctas,
        link=target.link,
        stands_for=target.tp if target.stand_in else None,
    )
    return dist.run_ranks(_rank_main, ranks, (job, target), interrupt_hint=getattr(job, "interrupt_hint", ""))


def _rank_main(info: DistInfo, payload: tuple[Job, Target]) -> int:
    job, target = payload
    try:
        if hasattr(job, "before_build"):  # e.g. signal handlers that must cover a long load too
            job.before_build(info)
        return job.run(build_for(target, info), info)
    except KeyboardInterrupt:  # Ctrl-C (or a job's SIGTERM handler) while loading or working
        if info.is_main and (info.launched or info.world == 1):  # else the spawning parent says it
            hint = getattr(job, "interrupt_hint", "")
            print(f"interrupted: {hint}" if hint else "interrupted", file=sys.stderr)
        return 130


def build_for(target: Target, info: DistInfo) -> TPModel:
    """This rank's shard of the target's model, built as every command builds it; rank 0 says
    what --compile cost."""
    model = build_model(
        target.spec,
        info,
        getattr(torch, target.dtype),
        target.max_len,
        target.seed,
        compiled=target.compile,
        decode=target.decode,
        tp=target.tp,
        slots=target.slots,
        prefill_tokens=target.prefill_tokens,
    )
    say_compiled(model, info.is_main)
    return model
