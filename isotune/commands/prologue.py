"""The one prologue of the commands that launch ranks (run, profile, bench, search), after the
target is resolved: lengths checked against the model, the target fitted (dtype, memory), the
plans and the profile checked against the setting they were made in, the alignment resolved.
All of it in the launching process, before any rank starts: bad input is one line and exit 2."""

from __future__ import annotations

from dataclasses import dataclass, field

from isotune.core.chunking import resolve_align
from isotune.core.plan import Plan, load_plan, plan_for
from isotune.core.profile import Profile, check_profile_fits, load_profile
from isotune.core.spec import check_seq_lens
from isotune.core.target import Target
from isotune.engine.launcher import say
from isotune.engine.target import fit_target, with_ctas
from isotune.engine.topology import run_setting


@dataclass(frozen=True, kw_only=True)
class GivenPlan:
    path: str
    plan: Plan
    splits: dict[int, list[float]]  # each length asked for -> the plan's ratios for it


@dataclass(kw_only=True)
class Prepared:
    target: Target  # fitted: ready to launch
    align: int
    plans: list[GivenPlan] = field(default_factory=list)
    profile: Profile | None = None


def prepare(
    target: Target,
    lens: list[int],
    *,
    max_len: int | None = None,
    decode: bool = False,
    too_long: tuple[str, str] = ("--seq-lens", "use shorter lengths"),
    plan_paths: list[str] | tuple[str, ...] = (),
    profile_path: str | None = None,
    force: bool = False,
    align: int | None = None,
    plan_ctas: bool = False,
    slots: int = 1,
    prefill_tokens: int | None = None,
) -> Prepared:
    """`lens`: the prompt lengths the command will run (the plans' splits are looked up for
    them); `max_len`: the KV cache's length when longer than the longest (run decodes past it);
    `too_long`: how a length past the model's limit is named, and its fix; `plan_ctas`: a plan
    searched with a CTA cap brings it where --comm-ctas is not given (run); `slots`: sequences
    the KV cache holds at once (run --max-seqs); `prefill_tokens`: the most tokens one forward
    carries where a pack carries more than `max_len` (its memory is checked too)."""
    cache = max_len or max(lens)
    check_seq_lens(target.spec, [cache] if max_len else lens, *too_long)
    plans = [(path, load_plan(path)) for path in plan_paths]  # a bad file is refused before any note
    prof = load_profile(profile_path) if profile_path else None
    target = fit_target(target, cache, decode, slots, prefill_tokens)
    if plan_ctas and plans and target.comm_ctas is None:
        comm = plans[0][1].topology.get("comm") or {}
        # NCCL's cap, or on a GPU stand-in the CTAs its link's hold took
        made = (
            comm.get("max_ctas") if target.backend == "nccl" else comm.get("hold_ctas") if target.held_on_gpu else None
        )
        if made:
            say(f"note: using the plan's --comm-ctas {made} (it was searched with that cap)")
            target = with_ctas(target, int(made))
    setting = run_setting(target)
    given = []
    for path, plan in plans:
        splits, notes = plan_for(plan, target.spec, target.tp, sorted(set(lens)), force, setting)
        for note in dict.fromkeys(notes):  # the same warning once, not once per length
            say(f"{path}: {note}")
        align = resolve_align(align, target.device, plan.align, path)
        given.append(GivenPlan(path=path, plan=plan, splits=splits))
    if prof is not None:
        for note in check_profile_fits(prof, target.spec, target.tp, setting=setting, force=force):
            say(f"{profile_path}: {note}")
    return Prepared(target=target, align=resolve_align(align, target.device), plans=given, profile=prof)
