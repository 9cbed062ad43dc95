"""What ISO would win on hardware you don't have: per catalog entry x TP size x length, the
cost model on an analytic profile (core.analytic) gives the unsplit prefill, ISO 50/50, the
tuned split (the same decision rule a `search --objective model` plan uses), and the ideal
max(compute, comm). Pure Python: the whole default table takes seconds."""

from __future__ import annotations

from dataclasses import dataclass

from isotune.core.analytic import analytic_profile
from isotune.core.cost import predict_serial, simulate
from isotune.core.decide import REFERENCE, bounds_text, decide
from isotune.core.errors import BadInput
from isotune.core.hardware import load_hardware
from isotune.core.space import local_best, try_bounds
from isotune.core.spec import ModelSpec

ALIGN = 64  # GPUs' alignment (DESIGN.md); every length here is a multiple of it or larger


@dataclass(frozen=True, kw_only=True)
class Estimate:
    hardware: str
    tp: int
    tokens: int
    baseline_ms: float
    iso5050_ms: float
    tuned_ms: float
    tuned_split: str  # '0.46/0.54', or 'no split'
    ideal_ms: float  # max(compute, comm): perfect overlap
    comm_share: float  # all-reduces' share of the unsplit prefill

    @property
    def saving(self) -> float:
        return 1 - self.tuned_ms / self.baseline_ms

    @property
    def iso5050_saving(self) -> float:
        return 1 - self.iso5050_ms / self.baseline_ms


def estimate(
    spec: ModelSpec, hardware: list[str], tps: list[int], lens: list[int], dtype: str, max_chunks: int
) -> tuple[list[Estimate], list[str]]:
    """(rows, notes): a note per (hardware, tp) left out, saying why."""
    rows, notes = [], []
    for given in hardware:
        hw = load_hardware(given)
        name = hw.name  # the entry's own name, also for a YAML path (a path would crowd the table)
        for tp in tps:
            try:
                prof = analytic_profile(hw, spec, tp, dtype)
            except BadInput as e:
                notes.append(f"{name} tp {tp} left out: {e}")
                continue
            for s in lens:
                rows.append(_one(prof, name, tp, s, spec.layers, max_chunks))
    return rows, notes


def _one(prof, name: str, tp: int, s: int, layers: int, max_chunks: int) -> Estimate:
    def cost(bounds: list[int]) -> float:
        return simulate(prof, bounds, layers)

    base = cost([0, s])
    half = try_bounds(s, [0.5, 0.5], ALIGN)
    best = local_best(cost, s, max_chunks, ALIGN)
    candidates = {"tuned": best} | ({REFERENCE: half} if half else {})
    candidates = {k: b for k, b in candidates.items() if len(b) > 2}  # splits only
    ms = {k: cost(b) for k, b in candidates.items()}
    verdict = decide([base], {k: [t] for k, t in ms.items()}, candidates)
    compute, comm = predict_serial(prof, s, layers)
    kept = candidates.get(verdict.keep) if verdict.keep else None
    return Estimate(
        hardware=name,
        tp=tp,
        tokens=s,
        baseline_ms=base,
        iso5050_ms=ms.get(REFERENCE, base),
        tuned_ms=verdict.ms,
        tuned_split=bounds_text(kept) if kept else "no split",
        ideal_ms=max(compute, comm),
        comm_share=comm / (compute + comm),
    )
