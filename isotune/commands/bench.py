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

from isotune.core.chunking import DEFAULT_ALIGN, chunk_bounds, parse_ratios, parse_seq_lens
from isotune.core.cost import simulate
from isotune.core.errors import BadInput
from isotune.core.files import atomic_write_text, check_writable
from isotune.core.plan import plan_for
from isotune.core.profile import Profile, check_profile_fits, load_profile
from isotune.core.spec import check_seq_lens, load_spec, parse_dtype
from isotune.engine import dist
from isotune.engine.dist import DistInfo
from isotune.engine.executor import COMM_ONLY, COMPUTE_ONLY
from isotune.engine.model import build_model, random_prompt
from isotune.engine.target import resolve_target
from isotune.engine.timing import time_prefills

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
) -> int:
    """The `bench` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    spec, tp, dev = resolve_target(model, layers, tp, device)
    lens = parse_seq_lens(seq_lens)
    check_seq_lens(spec, lens, "--seq-lens")
    if plan_paths and (chunks is not None or ratios is not None):
        raise BadInput("give --plan or --chunks/--ratios, not both")
    plans: list[dict[int, list[float]]] = []  # per plan: seq_len -> ratios
    for path in plan_paths or []:
        plan, splits, notes = plan_for(path, spec, tp, lens, force)
        for note in notes:
            print(f"{path}: {note}", file=sys.stderr)
        if align is not None and align != plan.align:
            raise BadInput(f"plan {path} was made for align {plan.align}, not {align}: drop --align or use the same")
        align = plan.align
        plans.append(splits)
    if chunks is not None or ratios is not None:
        r = parse_ratios(ratios, chunks or len(ratios.split(",")))
        plans.append({s: r for s in lens})
    align = align or DEFAULT_ALIGN[dev]
    for s in lens:  # every split must fit every length before a rank starts
        chunk_bounds(s, [0.5, 0.5], align)
        for splits in plans:
            chunk_bounds(s, splits[s], align)
    prof = load_profile(profile_path) if profile_path else None
    if prof is not None:
        check_profile_fits(prof, spec, tp)
    if json_out:
        check_writable(json_out, "--json")
    if repeats < 1 or warmup < 0:
        raise BadInput("--repeats must be at least 1 and --warmup at least 0")
    cfg = BenchConfig(
        model=model,
        layers=layers,
        dtype=parse_dtype(dtype),
        seq_lens=lens,
        align=align,
        plans=plans,
        profile=prof,
        warmup=warmup,
        repeats=repeats,
        device=dev,
        threads=threads,
        seed=seed,
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
    model = build_model(spec, info, getattr(torch, cfg.dtype), max(cfg.seq_lens), cfg.seed)
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
        t = time_prefills(model, info, ids, variants, cfg.warmup, cfg.repeats, cpu=cpu)
        ideal = max(t["compute"], t["comm"])
        # on a GPU the comm's CPU (launches, proxy thread) does not take the compute's SMs
        comm_cpu = cpu["comm"] if info.device.type == "cpu" else None
        floor = max(t["compute"] + comm_cpu, t["comm"]) if comm_cpu is not None else None
        for i, ratios in enumerate([plan[s] for plan in cfg.plans] or [None]):
            plan_ms = t.get(f"plan{i}") if ratios else None
            shown = plan_ms if ratios else t["iso5050"]  # efficiency of the plan, or of 50/50 without one
            rec = {
                "seq_len": s,
                "baseline_ms": t["baseline"],
                "iso5050_ms": t["iso5050"],
                "plan_ms": plan_ms,
                "compute_ms": t["compute"],
                "comm_ms": t["comm"],
                "ideal_ms": ideal,
                "overlap_efficiency": efficiency(t["baseline"], shown, ideal),
                "comm_cpu_ms": comm_cpu,
                "floor_ms": floor,
                "efficiency_ceiling": efficiency(t["baseline"], floor, ideal) if floor is not None else None,
                "predicted_baseline_ms": None,
                "predicted_plan_ms": None,
                "plan_chunks": len(ratios) if ratios else None,
                "plan_ratios": ratios,
            }
            if cfg.profile is not None:
                rec["predicted_baseline_ms"] = simulate(cfg.profile, whole, spec.layers)
                split = variants.get(f"plan{i}", variants["iso5050"])
                rec["predicted_plan_ms"] = simulate(cfg.profile, split, spec.layers)
            records.append(rec)
        if info.is_main:
            _progress(records[-1])
    if info.is_main:
        show_bench(records, spec.name, info, cfg)
        if cfg.json_path:
            atomic_write_text(cfg.json_path, json.dumps(records, indent=2) + "\n")
    return 0


def _progress(rec: dict) -> None:
    print(
        f"  {rec['seq_len']} tokens: baseline {rec['baseline_ms']:.1f} ms, 50/50 {rec['iso5050_ms']:.1f} ms", flush=True
    )


def show_bench(records: list[dict], name: str, info: DistInfo, cfg: BenchConfig) -> None:
    from rich.table import Table

    from isotune.viz.tables import console

    has_plan = any(r["plan_ms"] is not None for r in records)
    has_pred = any(r["predicted_baseline_ms"] is not None for r in records)
    t = Table(
        title=f"isotune bench: {name}, tp {info.world} {info.backend or 'single'} on {info.device.type}, "
        f"{cfg.dtype}, typical of {cfg.repeats} (slowest rank)"
    )
    cols = ["tokens", "baseline ms", "50/50 ms", "50/50 vs base"]
    cols += ["plan", "plan ms", "plan vs base"] if has_plan else []
    has_floor = any(r["floor_ms"] is not None for r in records)
    cols += ["compute ms", "comm ms", "ideal ms", "overlap eff."]
    cols += ["comm CPU ms", "floor ms", "eff. ceiling"] if has_floor else []
    cols += ["pred. base ms", "pred. " + ("plan" if has_plan else "50/50") + " ms"] if has_pred else []
    for c in cols:
        t.add_column(c, justify="right")
    for r in records:
        row = [
            str(r["seq_len"]),
            f"{r['baseline_ms']:.1f}",
            f"{r['iso5050_ms']:.1f}",
            f"{(r['iso5050_ms'] / r['baseline_ms'] - 1):+.1%}",
        ]
        if has_plan:
            row += (
                [
                    "/".join(f"{x:.2f}" for x in r["plan_ratios"]),
                    f"{r['plan_ms']:.1f}",
                    f"{(r['plan_ms'] / r['baseline_ms'] - 1):+.1%}",
                ]
                if r["plan_ms"] is not None
                else ["-"] * 3
            )
        eff = r["overlap_efficiency"]
        row += [
            f"{r['compute_ms']:.1f}",
            f"{r['comm_ms']:.1f}",
            f"{r['ideal_ms']:.1f}",
            f"{eff:.2f}" if eff is not None else "-",
        ]
        if has_floor:
            ceiling = r["efficiency_ceiling"]
            row += [f"{r['comm_cpu_ms']:.1f}", f"{r['floor_ms']:.1f}", f"{ceiling:.2f}" if ceiling is not None else "-"]
        if has_pred:
            row += [f"{r['predicted_baseline_ms']:.1f}", f"{r['predicted_plan_ms']:.1f}"]
        t.add_row(*row)
    console().print(t)
    print(
        "overlap eff. = (baseline - ISO) / (baseline - ideal), ideal = max(compute, comm); of the plan"
        + ("" if has_plan else " (here: 50/50, no plan given)")
    )
    if has_floor:
        print(
            "comm CPU = CPU that communication's threads burned in the comm-only run (copies, sockets, sums); "
            "floor = max(compute + comm CPU, comm): when compute fills every core that CPU comes out of compute "
            "time; eff. ceiling = the efficiency at the floor (both as noisy as compute ms)"
        )
