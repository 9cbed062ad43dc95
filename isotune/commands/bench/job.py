"""What each rank of `isotune bench` runs: per length, every variant measured side by side,
interleaved repeat by repeat (engine.timing), and rank 0's record of it. On CPU ranks also the
CPU the comm-only run burned: where compute fills every core (a one-thread rank per core), that
CPU comes out of the compute's time, so no schedule beats floor = max(compute + comm CPU, comm)
by more than the noise of compute, and the efficiency at that floor is the ceiling a plan can
reach on this machine. With a profile, the cost model's predictions beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from isotune.commands.bench.tables import show_bench
from isotune.core.chunking import chunk_bounds
from isotune.core.cost import simulate
from isotune.core.files import atomic_write_text
from isotune.core.pack import packed
from isotune.core.profile import Profile
from isotune.core.stats import interval, paired_change
from isotune.engine.executor import COMM_ONLY, COMPUTE_ONLY
from isotune.engine.model import TPModel, random_prompt
from isotune.engine.rank import DistInfo
from isotune.engine.timing import time_prefills
from isotune.engine.topology import title

# the record's keys: the first ones are read by scripts and keep their meaning; intervals
# ([low, high] of the 95% CI) and paired changes ([change, low, high], fractions) sit beside them
KEYS = (
    "seq_len",
    "baseline_ms",
    "iso5050_ms",
    "plan_ms",
    "compute_ms",
    "comm_ms",
    "ideal_ms",
    "overlap_efficiency",
    "comm_cpu_ms",
    "floor_ms",
    "efficiency_ceiling",
    "predicted_baseline_ms",
    "predicted_plan_ms",
    "plan_chunks",
    "plan_ratios",
    "repeats",
    "baseline_ms_ci",
    "iso5050_ms_ci",
    "plan_ms_ci",
    "compute_ms_ci",
    "comm_ms_ci",
    "iso5050_vs_baseline",
    "plan_vs_baseline",
    "plan_vs_iso5050",
    "share_of_achievable",
    "predicted_iso5050_ms",
    "pack",
)


def efficiency(baseline: float, t: float, ideal: float) -> float | None:
    """Share of the hideable time (baseline - ideal) that a schedule actually hid."""
    gap = baseline - ideal
    return (baseline - t) / gap if gap > 1e-9 else None


@dataclass(kw_only=True)
class BenchJob:
    seq_lens: list[int]
    align: int
    plans: list[dict[int, list[float]]]  # per plan given: seq_len -> ratios of its schedule
    profile: Profile | None
    warmup: int
    repeats: int
    json_path: str | None
    pack: int | None = None  # --pack: each length timed as prompts of this many tokens, packed

    def run(self, model: TPModel, info: DistInfo) -> int:
        return _bench(model, info, self)


@torch.inference_mode()
def _bench(model: TPModel, info: DistInfo, job: BenchJob) -> int:
    spec = model.spec
    records = []
    for s in job.seq_lens:
        ids = torch.tensor(random_prompt(s, spec.vocab, model.seed), device=info.device)  # (S,)
        pack = packed(s, job.pack) if job.pack else None  # the S tokens as several prompts
        whole = [0, s]
        variants = {
            "baseline": whole,
            "iso5050": chunk_bounds(s, [0.5, 0.5], job.align),
            "compute": (whole, COMPUTE_ONLY),
            "comm": (whole, COMM_ONLY),
        }
        for i, plan in enumerate(job.plans):  # several plans: measured side by side, interleaved
            if len(plan[s]) > 1:  # a plan that keeps no split here runs the baseline: nothing more to time
                variants[f"plan{i}"] = chunk_bounds(s, plan[s], job.align)
        cpu: dict[str, float] = {}
        samples: dict[str, list[float]] = {}
        time_prefills(model, info, ids, variants, job.warmup, job.repeats, samples=samples, cpu=cpu, pack=pack)
        # on a GPU the comm's CPU (launches, proxy thread) does not take the compute's SMs
        comm_cpu = cpu["comm"] if info.device.type == "cpu" else None
        for i, ratios in enumerate([plan[s] for plan in job.plans] or [None]):
            bounds = {"baseline": whole, "iso5050": variants["iso5050"]}
            splits = f"plan{i}" in variants
            if ratios:
                bounds["plan"] = variants[f"plan{i}"] if splits else whole
            # no split: the plan's prefill is the baseline's, the same samples, and no change of it against itself
            rec = record(s, samples | ({"plan": samples[f"plan{i}" if splits else "baseline"]} if ratios else {}),
                         comm_cpu, splits)  # fmt: skip
            rec["plan_chunks"], rec["plan_ratios"] = (len(ratios), ratios) if ratios else (None, None)
            rec["pack"] = job.pack
            if job.profile is not None:
                for name, b in bounds.items():
                    rec[f"predicted_{name}_ms"] = simulate(job.profile, b, spec.layers, pack=pack)
                if not ratios:  # kept for scripts: the 50/50 prediction when there is no plan
                    rec["predicted_plan_ms"] = rec["predicted_iso5050_ms"]
            records.append(rec)
        if info.is_main:
            _progress(records[-1])
    if info.is_main:
        packs = f", packs of {job.pack}-token prompts" if job.pack else ""
        show_bench(records, f"isotune bench: {title(model, info)}{packs}", job.repeats)
        if job.json_path:
            atomic_write_text(job.json_path, json.dumps(records, indent=2) + "\n")
    return 0


def record(s: int, samples: dict[str, list[float]], comm_cpu: float | None, plan_splits: bool = True) -> dict:
    """One length's record: each figure's typical ms and 95% interval, the splits' paired change
    against the baseline (and the plan's against 50/50), and where the time goes. The overlap
    efficiency is the plan's where it splits this length, else 50/50's: an unsplit prefill
    overlaps nothing, and its 'efficiency' would be noise read as a gain."""
    t = {name: interval(ts) for name, ts in samples.items()}
    base = t["baseline"].estimate
    ideal = max(t["compute"].estimate, t["comm"].estimate)
    floor = max(t["compute"].estimate + comm_cpu, t["comm"].estimate) if comm_cpu is not None else None
    plan = t.get("plan")
    shown = plan if plan is not None and plan_splits else t["iso5050"]
    rec = {key: None for key in KEYS} | {"seq_len": s, "repeats": len(samples["baseline"])}
    for name in ("baseline", "iso5050", "plan", "compute", "comm"):
        if name in t:
            rec[f"{name}_ms"] = t[name].estimate
            rec[f"{name}_ms_ci"] = [t[name].low, t[name].high]
    for name, ref in (("iso5050", "baseline"), ("plan", "baseline"), ("plan", "iso5050")):
        if name in samples and samples[name] is not samples[ref]:
            iv = paired_change(samples[ref], samples[name])
            rec[f"{name}_vs_{ref}"] = iv.triple()
    rec |= {
        "ideal_ms": ideal,
        "overlap_efficiency": efficiency(base, shown.estimate, ideal),
        "comm_cpu_ms": comm_cpu,
        "floor_ms": floor,
        "efficiency_ceiling": efficiency(base, floor, ideal) if floor is not None else None,
        "share_of_achievable": efficiency(base, shown.estimate, floor if floor is not None else ideal),
    }
    return rec


def _progress(rec: dict) -> None:
    print(
        f"  {rec['seq_len']} tokens: baseline {rec['baseline_ms']:.1f} ms, 50/50 {rec['iso5050_ms']:.1f} ms", flush=True
    )
