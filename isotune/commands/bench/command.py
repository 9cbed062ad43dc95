"""`isotune bench`: per prompt length, measured side by side in one run (interleaved repeat by
repeat): the baseline (k=1), ISO 50/50, an optional plan, compute only and comm only of the
baseline, and ideal = max(compute, comm), the physical limit of overlap (the ranks' side:
bench.job). Here: the flags checked before any rank starts."""

from __future__ import annotations

from isotune.commands.bench.job import BenchJob
from isotune.commands.prologue import prepare
from isotune.core.chunking import PLAN_OR_SPLIT, asked_split, chunk_bounds, parse_seq_lens
from isotune.core.errors import BadInput
from isotune.core.files import check_writable
from isotune.core.pack import check_pack_size
from isotune.core.target import TargetFlags
from isotune.engine.launch import launch
from isotune.engine.launcher import say
from isotune.engine.target import resolve_target


def bench(
    *,
    target: TargetFlags,
    seq_lens: str,
    chunks: int | None,
    ratios: str | None,
    plan: list[str] | None,
    force: bool,
    profile: str | None,
    align: int | None,
    json_out: str | None,
    warmup: int,
    repeats: int,
    pack: int | None = None,
) -> int:
    """The `bench` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    resolved = resolve_target(target)
    lens = parse_seq_lens(seq_lens)
    slots = check_pack_size(pack, lens)
    if plan and (chunks is not None or ratios is not None):
        raise BadInput(PLAN_OR_SPLIT)
    if repeats < 1 or warmup < 0:
        raise BadInput("--repeats must be at least 1 and --warmup at least 0")
    prep = prepare(resolved, lens, plan_paths=plan or [], profile_path=profile, force=force, align=align,
                   max_len=pack and min(pack, max(lens)), slots=slots, prefill_tokens=max(lens))  # fmt: skip
    plans = [given.splits for given in prep.plans]  # per plan: seq_len -> ratios
    for given in prep.plans:  # a split searched on single prompts may not be a pack's best, and back
        made = given.plan.study.get("pack")
        if made != pack:
            on = f"packs of {made}-token prompts" if made else "single prompts"
            say(
                f"note: {given.path} was searched on {on}; this bench times "
                + (f"packs of {pack}-token prompts" if pack else "single prompts")
            )
    if chunks is not None or ratios is not None:
        r = asked_split(chunks, ratios)
        plans.append({s: r for s in lens})
    for s in lens:  # every split must fit every length before a rank starts
        chunk_bounds(s, [0.5, 0.5], prep.align)
        for splits in plans:
            chunk_bounds(s, splits[s], prep.align)
    if json_out:
        check_writable(json_out, "--json")
    job = BenchJob(
        seq_lens=lens,
        align=prep.align,
        plans=plans,
        profile=prep.profile,
        warmup=warmup,
        repeats=repeats,
        json_path=json_out,
        pack=pack,
    )
    return launch(job, prep.target)
