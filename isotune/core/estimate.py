"""What ISO would win on hardware you don't have: per catalog entry x TP size x length, the
cost model gives the unsplit prefill, ISO 50/50, the tuned split (the same decision rule a
`search --objective model` plan uses), and the ideal max(compute, comm). Its profile is a
measured one where one fits (a stand-in's, `profile --hardware NAME --tp N --ranks 1`: the
compute measured on a device of that kind, the entry's link emulated), else the analytic one
(core.analytic: a roofline). Pure Python: the whole default table takes seconds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from isotune.core.analytic import analytic_profile
from isotune.core.cost import predict_serial, simulate
from isotune.core.decide import REFERENCE, bounds_text, decide
from isotune.core.errors import BadInput
from isotune.core.hardware import load_hardware
from isotune.core.profile import Profile
from isotune.core.space import local_best, try_bounds
from isotune.core.spec import ModelSpec

ALIGN = 64  # GPUs' alignment (run --align's default there); every length here is a multiple of it or larger


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
    compute: str = "modelled"  # or "measured on DEVICE": where the profile's compute came from

    @property
    def saving(self) -> float:
        return 1 - self.tuned_ms / self.baseline_ms

    @property
    def iso5050_saving(self) -> float:
        return 1 - self.iso5050_ms / self.baseline_ms


def estimate(
    spec: ModelSpec,
    hardware: list[str],
    tps: list[int],
    lens: list[int],
    dtype: str,
    max_chunks: int,
    measured: dict[str, Profile] | None = None,
) -> tuple[list[Estimate], list[str]]:
    """(rows, notes): a note per (hardware, tp) left out, saying why. `measured` maps a file name
    to a stand-in's profile (see fits_measured); one that fits a row replaces its analytic
    profile there, and a note says which file each row took."""
    rows, notes = [], []
    measured = measured or {}
    for given in hardware:
        hw = load_hardware(given)
        name = hw.name  # the entry's own name, also for a YAML path (a path would crowd the table)
        for tp in tps:
            found = [(f, p) for f, p in measured.items() if fits_measured(p, spec, name, tp, dtype)]
            if found:
                path, prof = found[0]
                compute = f"measured on {prof.topology.get('device', 'its device')}"
                notes.append(f"{name} tp {tp}: {compute} ({path}); its link: {prof.topology['interconnect']}")
            else:
                try:
                    prof = analytic_profile(hw, spec, tp, dtype)
                except BadInput as e:
                    notes.append(f"{name} tp {tp} left out: {e}")
                    continue
                compute = "modelled"
            for s in lens:
                rows.append(_one(prof, name, tp, s, spec.layers, max_chunks, compute))
    return rows, notes


def fits_measured(prof: Profile, spec: ModelSpec, hardware: str, tp: int, dtype: str) -> bool:
    """A stand-in's profile stands for `hardware` at `tp` for this model and dtype: its model is
    `spec` at the layers it measured (its costs are per layer), and its own TP, dtype and entry."""
    t = prof.topology
    at_its_layers = dataclasses.replace(spec, layers=int(prof.model["layers"]))  # more or fewer than spec's
    same_model = prof.model.get("fingerprint") == at_its_layers.fingerprint()
    return same_model and t.get("hardware") == hardware and t.get("tp") == tp and t.get("dtype") == dtype


def check_measured(path: str, prof: Profile) -> None:
    """A profile given to estimate must be a stand-in's made for a catalog entry."""
    if prof.source != "measured" or not prof.topology.get("hardware"):
        raise BadInput(
            f"{path} is not a measured profile of a catalog entry: make one with isotune profile "
            "--hardware NAME --tp N --ranks 1 on a device of that kind"
        )


def _one(prof, name: str, tp: int, s: int, layers: int, max_chunks: int, compute: str) -> Estimate:
    def cost(bounds: list[int]) -> float:
        return simulate(prof, bounds, layers)

    base = cost([0, s])
    half = try_bounds(s, [0.5, 0.5], ALIGN)
    best = local_best(cost, s, max_chunks, ALIGN)
    candidates = {"tuned": best} | ({REFERENCE: half} if half else {})
    candidates = {k: b for k, b in candidates.items() if len(b) > 2}  # splits only
    ms = {k: cost(b) for k, b in candidates.items()}
    verdict = decide([base], {k: [t] for k, t in ms.items()}, candidates)
    compute_ms, comm_ms = predict_serial(prof, s, layers)
    kept = candidates.get(verdict.keep) if verdict.keep else None
    return Estimate(
        hardware=name,
        tp=tp,
        tokens=s,
        baseline_ms=base,
        iso5050_ms=ms.get(REFERENCE, base),
        tuned_ms=verdict.ms,
        tuned_split=bounds_text(kept) if kept else "no split",
        ideal_ms=max(compute_ms, comm_ms),
        comm_share=comm_ms / (compute_ms + comm_ms),
        compute=compute,
    )
