"""The overlap plan: per prompt-length bucket, how many chunks and which split ratios. Its YAML
schema, validation, lookup by length and atomic write. Pure Python (no torch).

Buckets are sorted, non-overlapping and cover 1..max_tokens of the last one. A searched length
owns the bucket reaching halfway to its neighbours.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import yaml

from isotune.core.chunking import MAX_CHUNKS, RATIO_SUM_TOL, chunk_bounds
from isotune.core.errors import BadInput
from isotune.core.files import atomic_write_text, first_key, read_yaml
from isotune.core.setting import refuse_or_warn, setting_problems
from isotune.core.spec import ModelSpec

PLAN_VERSION = 1


@dataclass(kw_only=True)
class Bucket:
    min_tokens: int
    max_tokens: int
    chunks: int
    ratios: list[float]
    plan_ms: float
    baseline_ms: float
    seq_len: int | None = None  # the length that was searched for this bucket
    trials: int | None = None  # measured trials of its study
    iso5050_ms: float | None = None  # ISO 50/50, measured beside plan and baseline
    decision: str | None = None  # why this split (or none) was kept, with its numbers
    outcome: str | None = None  # the decision in a word: kept, within noise, slower, too small
    stopped: str | None = None  # why the study ended
    vs_baseline: list[float] | None = None  # kept split vs baseline: [change, 95% CI low, high]
    iso5050_vs_baseline: list[float] | None = None  # the same for ISO 50/50
    compute_ms: float | None = None  # the unsplit prefill without its all-reduces
    comm_ms: float | None = None  # its all-reduces alone
    comm_cpu_ms: float | None = None  # CPU ranks: the CPU those all-reduces burn on the compute's cores
    repeats: int | None = None  # paired repeats behind the decision

    @property
    def span(self) -> str:
        """The lengths it covers, as tables, notes and run's records name a bucket: '769..1536'."""
        return f"{self.min_tokens}..{self.max_tokens}"


@dataclass(kw_only=True)
class Plan:
    model: dict  # {name, fingerprint, layers}
    topology: dict  # {tp, backend, device, device_count, interconnect, hosts, dtype, threads_per_rank}
    software: dict  # {isotune, torch}
    align: int
    buckets: list[Bucket]
    study: dict = field(default_factory=dict)  # {storage, name, trials, objective, sampler}


def bucket_ranges(seq_lens: list[int]) -> list[tuple[int, int]]:
    """(min_tokens, max_tokens) per searched length: from the midpoint with the previous length
    (or 1) to the midpoint with the next (or the length itself)."""
    lens = sorted(seq_lens)
    uppers = [(a + b) // 2 for a, b in pairwise(lens)] + [lens[-1]]
    lowers = [1] + [u + 1 for u in uppers[:-1]]
    return list(zip(lowers, uppers, strict=True))


def validate(plan: Plan, where: str = "plan") -> Plan:
    """Raise BadInput naming the first thing wrong with `plan`."""
    if not isinstance(plan.align, int) or plan.align < 1:
        raise BadInput(f"{where}: align {plan.align!r} must be a positive integer: re-run isotune search")
    if not plan.buckets:
        raise BadInput(f"{where} has no buckets: re-run isotune search")
    expect_min = 1
    for i, b in enumerate(plan.buckets):
        name = f"{where} bucket {i} ({b.span})"
        if b.min_tokens != expect_min:
            problem = "overlaps the previous one" if b.min_tokens < expect_min else "leaves a gap before it"
            raise BadInput(
                f"{name} {problem}: buckets must be sorted and cover 1..N without gaps (start at {expect_min})"
            )
        if b.max_tokens < b.min_tokens:
            raise BadInput(f"{name} ends before it starts: make max_tokens >= min_tokens")
        if not 1 <= b.chunks <= MAX_CHUNKS:
            raise BadInput(f"{name}: chunks {b.chunks} is out of range 1..{MAX_CHUNKS}")
        if len(b.ratios) != b.chunks:
            raise BadInput(f"{name}: {len(b.ratios)} ratios for {b.chunks} chunks: give one ratio per chunk")
        if any(not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 0 for r in b.ratios):
            raise BadInput(f"{name}: ratios {b.ratios} must be positive numbers")
        if abs(sum(b.ratios) - 1.0) > RATIO_SUM_TOL:
            raise BadInput(f"{name}: ratios {b.ratios} sum to {sum(b.ratios):.4g}, not 1: make them add up to 1")
        if b.chunks * plan.align > b.max_tokens:
            raise BadInput(
                f"{name}: {b.chunks} chunks of at least {plan.align} tokens do not fit in {b.max_tokens} tokens: "
                "use fewer chunks"
            )
        expect_min = b.max_tokens + 1
    return plan


def lookup(plan: Plan, seq_len: int) -> tuple[Bucket, bool]:
    """(bucket holding seq_len, whether seq_len is above the last bucket: then the last one)."""
    for b in plan.buckets:
        if b.min_tokens <= seq_len <= b.max_tokens:
            return b, False
    return plan.buckets[-1], True


def split_for(plan: Plan, seq_len: int) -> tuple[list[float], list[str]]:
    """The ratios the plan prescribes for a prompt of seq_len tokens, and warnings: above the last
    bucket its split is reused; a prompt too short for the bucket's chunks runs unsplit."""
    bucket, above = lookup(plan, seq_len)
    notes = []
    if above:
        notes.append(
            f"warning: {seq_len} tokens is above the plan's last bucket (..{bucket.max_tokens}); "
            "using its split: search longer lengths to cover it"
        )
    try:
        chunk_bounds(seq_len, bucket.ratios, plan.align)
    except BadInput:
        notes.append(
            f"warning: {seq_len} tokens cannot take the bucket's {bucket.chunks} chunks at align {plan.align}; running unsplit"
        )
        return [1.0], notes
    return bucket.ratios, notes


def check_fits(
    plan: Plan, fingerprint: str, model: str, tp: int, force: bool, setting: dict | None = None
) -> list[str]:
    """Refuse a plan made for another model, TP size, dtype, backend, device or interconnect
    (BadInput) unless `force`; returns warnings. `model` describes this run's model, e.g. "tiny
    (2 layers)"; `setting` this run's values of core.setting.SETTING_KEYS (a key it lacks is not checked)."""
    problems = []
    if plan.model.get("fingerprint") != fingerprint:
        made = f"{plan.model.get('name')} ({plan.model.get('layers', '?')} layers)"
        problems.append(
            f"the plan was made for model {made}, fingerprint {str(plan.model.get('fingerprint'))[:12]}, not {model}"
        )
    if plan.topology.get("tp") != tp:
        problems.append(f"the plan was made for tp {plan.topology.get('tp')}, not tp {tp}")
    problems += setting_problems(plan.topology, setting, "the plan was made")
    return refuse_or_warn(problems, force, "search a plan for this setup")


def plan_for(
    plan: Plan, spec: ModelSpec, tp: int, seq_lens: list[int], force: bool, setting: dict | None = None
) -> tuple[dict[int, list[float]], list[str]]:
    """The plan's split for each length, for this model and TP size (refused unless `force`, see
    check_fits): (seq_len -> ratios, warnings)."""
    notes = check_fits(plan, spec.fingerprint(), f"{spec.name} ({spec.layers} layers)", tp, force, setting)
    splits = {}
    for s in seq_lens:
        splits[s], more = split_for(plan, s)
        notes += more
    return splits, notes


def plan_to_yaml(plan: Plan) -> str:
    d = {"isotune_plan": PLAN_VERSION} | dataclasses.asdict(plan)
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=120)


def save_plan(plan: Plan, path: str | Path) -> None:
    atomic_write_text(path, plan_to_yaml(validate(plan)))


def is_plan_file(path: str | Path) -> bool:
    """Whether `path` looks like a plan (its first key), so `show` can tell plans from profiles."""
    return first_key(path) == "isotune_plan"


def load_plan(path: str | Path) -> Plan:
    d = read_yaml(path, "plan", "isotune search")
    if not isinstance(d, dict) or "isotune_plan" not in d:
        raise BadInput(f"{path} is not an isotune plan (no isotune_plan key): give a file written by isotune search")
    if d["isotune_plan"] != PLAN_VERSION:
        raise BadInput(
            f"plan {path} has schema version {d['isotune_plan']!r}, this isotune reads {PLAN_VERSION}: "
            "re-run isotune search"
        )
    try:
        d.pop("isotune_plan")
        if not isinstance(d.get("buckets"), list):
            raise TypeError("buckets must be a list")
        d["buckets"] = [Bucket(**b) for b in d["buckets"]]
        plan = Plan(**d)
        _ = plan.model["fingerprint"], plan.topology["tp"]
    except (TypeError, KeyError) as e:
        raise BadInput(f"plan {path} is malformed ({e}): re-run isotune search") from None
    return validate(plan, f"plan {path}")
