"""`isotune bench`: per prompt length, measured side by side in one run (interleaved repeat by
repeat): the baseline (k=1), ISO 50/50, an optional plan, compute only and comm only of the
baseline, and ideal = max(compute, comm), the physical limit of overlap. On CPU ranks also the
CPU the comm-only run burned: where compute fills every core (a one-thread rank per core), that
CPU comes out of the compute's time, so no schedule beats floor = max(compute + comm CPU, comm)
by more than the noise of compute, and the efficiency at that floor is the ceiling a plan can
reach on this machine. With a profile,
the cost model's predictions beside them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import torch

from isotune.commands.comm import parse_cap, set_ctas
from isotune.core.chunking import PLAN_OR_SPLIT, chunk_bounds, parse_ratios, parse_seq_lens, resolve_align
from isotune.core.cost import simulate
from isotune.core.errors import BadInput
from isotune.core.files import atomic_write_text, check_writable
from isotune.core.plan import plan_for
from isotune.core.profile import Profile, check_profile_fits, load_profile
from isotune.core.spec import check_seq_lens, load_spec
from isotune.core.stats import interval, paired_change
from isotune.engine import dist
from isotune.engine.dist import DistInfo
from isotune.engine.executor import COMM_ONLY, COMPUTE_ONLY
from isotune.engine.fused import say_compiled
from isotune.engine.model import build_model, random_prompt
from isotune.engine.target import fit_target, resolve_target
from isotune.engine.timing import time_prefills
from isotune.engine.topology import run_setting, setting
from isotune.viz.bench_tables import show_bench

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
)


@dataclass(kw_only=True)
class BenchConfig:
    model: str
    layers: int | None
    dtype: str
    seq_lens: list[int]
    align: int
    plans: list[dict[int, list[float]]]  # per plan given: seq_len -> ratios of its schedule
    profile: Profile | None
    warmup: int
    repeats: int
    device: str
    threads: int
    seed: int
    compile: bool = False  # --compile: fused elementwise steps (engine.fused)
    json_path: str | None


def bench(
    *,
    model: str,
    tp: int | None,
    layers: int | None,
    dtype: str,
    seq_lens: str,
    chunks: int | None,
    ratios: str | None,
    plan_paths: list[str] | None,
    force: bool,
    profile_path: str | None,
    align: int | None,
    json_out: str | None,
    warmup: int,
    repeats: int,
    device: str,
    threads: int,
    seed: int,
    compile: bool = False,
    comm_ctas: str | None = None,
) -> int:
    """The `bench` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    spec, tp, dev = resolve_target(model, layers, tp, device)
    set_ctas(parse_cap(comm_ctas), tp, dev)
    lens = parse_seq_lens(seq_lens)
    check_seq_lens(spec, lens, "--seq-lens")
    if plan_paths and (chunks is not None or ratios is not None):
        raise BadInput(PLAN_OR_SPLIT)
    if repeats < 1 or warmup < 0:
        raise BadInput("--repeats must be at least 1 and --warmup at least 0")
    dtype = fit_target(spec, tp, dev, dtype, max(lens))
    plans: list[dict[int, list[float]]] = []  # per plan: seq_len -> ratios
    for path in plan_paths or []:
        plan, splits, notes = plan_for(path, spec, tp, lens, force, run_setting(tp, dev, dtype, compile))
        for note in notes:
            print(f"{path}: {note}", file=sys.stderr)
        align = resolve_align(align, dev, plan.align, path)
        plans.append(splits)
    if chunks is not None or ratios is not None:
        r = parse_ratios(ratios, chunks or len(ratios.split(",")))
        plans.append({s: r for s in lens})
    align = resolve_align(align, dev)
    for s in lens:  # every split must fit every length before a rank starts
        chunk_bounds(s, [0.5, 0.5], align)
        for splits in plans:
            chunk_bounds(s, splits[s], align)
    prof = load_profile(profile_path) if profile_path else None
    if prof is not None:
        for note in check_profile_fits(prof, spec, tp, setting=run_setting(tp, dev, dtype, compile), force=force):
            print(f"{profile_path}: {note}", file=sys.stderr)
    if json_out:
        check_writable(json_out, "--json")
    cfg = BenchConfig(
        model=model,
        layers=layers,
        dtype=dtype,
        seq_lens=lens,
        align=align,
        plans=plans,
        profile=prof,
        warmup=warmup,
        repeats=repeats,
        device=dev,
        threads=threads,
        seed=seed,
        compile=compile,
        json_path=json_out,
    )
    return dist.launch(bench_worker, tp, cfg, device=dev, threads=threads)


def efficiency(baseline: float, t: float, ideal: float) -> float | None:
    """Share of the hideable time (baseline - ideal) that a schedule actually hid."""
    gap = baseline - ideal
    return (baseline - t) / gap if gap > 1e-9 else None


@torch.inference_mode()
def bench_worker(info: DistInfo, cfg: BenchConfig) -> int:
    spec = load_spec(cfg.model, cfg.layers)
    model = build_model(spec, info, getattr(torch, cfg.dtype), max(cfg.seq_lens), cfg.seed, compiled=cfg.compile)
    say_compiled(model, info.is_main)
    records = []
    for s in cfg.seq_lens:
        ids = torch.tensor(random_prompt(s, spec.vocab, cfg.seed), device=info.device)
        whole = [0, s]
        variants = {
            "baseline": whole,
            "iso5050": chunk_bounds(s, [0.5, 0.5], cfg.align),
            "compute": (whole, COMPUTE_ONLY),
            "comm": (whole, COMM_ONLY),
        }
        for i, plan in enumerate(cfg.plans):  # several plans: measured side by side, interleaved
            variants[f"plan{i}"] = chunk_bounds(s, plan[s], cfg.align)
        cpu: dict[str, float] = {}
        samples: dict[str, list[float]] = {}
        time_prefills(model, info, ids, variants, cfg.warmup, cfg.repeats, samples=samples, cpu=cpu)
        # on a GPU the comm's CPU (launches, proxy thread) does not take the compute's SMs
        comm_cpu = cpu["comm"] if info.device.type == "cpu" else None
        for i, ratios in enumerate([plan[s] for plan in cfg.plans] or [None]):
            bounds = {"baseline": whole, "iso5050": variants["iso5050"]}
            if ratios:
                bounds["plan"] = variants[f"plan{i}"]
            rec = record(
                s, samples | ({"plan": samples[f"plan{i}"]} if ratios else {}), comm_cpu, len(ratios or []) > 1
            )
            rec["plan_chunks"], rec["plan_ratios"] = (len(ratios), ratios) if ratios else (None, None)
            if cfg.profile is not None:
                for name, b in bounds.items():
                    rec[f"predicted_{name}_ms"] = simulate(cfg.profile, b, spec.layers)
                if not ratios:  # kept for scripts: the 50/50 prediction when there is no plan
                    rec["predicted_plan_ms"] = rec["predicted_iso5050_ms"]
            records.append(rec)
        if info.is_main:
            _progress(records[-1])
    if info.is_main:
        show_bench(records, f"isotune bench: {setting(info, spec.name, spec.layers, cfg.dtype)}", cfg.repeats)
        if cfg.json_path:
            atomic_write_text(cfg.json_path, json.dumps(records, indent=2) + "\n")
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
        if name in samples:
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
