"""The hardware catalog: one YAML file per GPU kind in profiles/hardware/ (peak rates, memory,
SMs, the link, all-reduce bus bandwidth and latency per TP size), every number with a `source:`.
Read and checked here; `core.analytic` turns an entry into a Profile. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from isotune.core.errors import BadInput
from isotune.core.files import read_yaml

HARDWARE_VERSION = 1
# profiles/hardware in the checkout; isotune/catalog links to it, so an installed wheel carries a
# copy as package data. --hardware also takes a path
CATALOG = Path(__file__).resolve().parents[1] / "catalog"
GPU_FIELDS = ("bf16_dense_tflops", "hbm_gb_s", "sm_count", "memory_gib")
LINK_FIELDS = ("link_gb_s", "nccl_channels")


@dataclass(frozen=True, kw_only=True)
class Sourced:
    value: float
    source: str
    points: list[list[float]] | None = None  # [[tokens, value], ...] where a rate was measured by size


@dataclass(frozen=True, kw_only=True)
class AllReduce:
    tp: int
    busbw_gb_s: float  # nccl-tests bus bandwidth at large messages
    latency_us: float  # a small message's time
    source: str
    points: list[list[float]] | None = None  # [[message bytes, busbw GB/s], ...] where measured by size


@dataclass(frozen=True, kw_only=True)
class Hardware:
    name: str
    description: str
    gpu: dict[str, Sourced]  # GPU_FIELDS
    kind: str  # nvlink, pcie, or loopback/network for CPU ranks
    p2p: bool
    link: dict[str, Sourced]  # LINK_FIELDS
    allreduce: list[AllReduce]
    arch: str = "gpu"  # ampere, ada, hopper; cpu: rates measured, not peaks (see core.analytic)
    extra: dict[str, Sourced] = field(default_factory=dict)  # optional measured rates (cpu)

    def allreduce_for(self, tp: int) -> tuple[AllReduce, str | None]:
        """The all-reduce figures at `tp`, and an assumption line when they were taken from
        another TP size (the nearest larger one, else the largest: a ring's bus bandwidth
        changes little with the rank count on one switch)."""
        exact = [a for a in self.allreduce if a.tp == tp]
        if exact:
            return exact[0], None
        larger = sorted((a for a in self.allreduce if a.tp > tp), key=lambda a: a.tp)
        near = larger[0] if larger else max(self.allreduce, key=lambda a: a.tp)
        return near, f"{self.name} has no all-reduce figure at tp {tp}: the tp {near.tp} one is used"


def hardware_names() -> list[str]:
    return sorted(p.stem for p in CATALOG.glob("*.yaml"))


def hardware_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or "/" in name:  # a path, not a catalog name
        return p
    if not CATALOG.is_dir():
        raise BadInput(f"the hardware catalog ({CATALOG}) is not here: reinstall isotune or give a YAML path")
    p = CATALOG / f"{name}.yaml"
    if not p.is_file():
        raise BadInput(
            f"--hardware {name!r} is not in the catalog: use one of {', '.join(hardware_names())} or a YAML path"
        )
    return p


def load_hardware(name: str) -> Hardware:
    """A catalog entry by name (or a path to one), checked: every field present, numeric and
    sourced. BadInput names the first problem."""
    path = hardware_path(name)
    d = read_yaml(path, "hardware entry", "the catalog in profiles/hardware")
    where = f"hardware {path}"
    if not isinstance(d, dict) or d.get("isotune_hardware") != HARDWARE_VERSION:
        raise BadInput(f"{where} is not an isotune hardware entry (isotune_hardware: {HARDWARE_VERSION})")
    try:
        gpu, link = d["gpu"], d["interconnect"]
        entries = link["allreduce"]
        if not isinstance(entries, list) or not entries:
            raise BadInput(f"{where}: interconnect.allreduce needs at least one TP size")
        return Hardware(
            name=str(d["name"]),
            description=str(d["description"]),
            gpu={k: _sourced(gpu, k, where) for k in GPU_FIELDS},
            kind=str(link["kind"]),
            p2p=bool(link["p2p"]),
            link={k: _sourced(link, k, where) for k in LINK_FIELDS},
            allreduce=[_allreduce(a, where) for a in entries],
            arch=str(d.get("arch", "gpu")),
            extra={k: _sourced(d["measured"], k, where) for k in d.get("measured", {}) or {}},
        )
    except (KeyError, TypeError) as e:
        raise BadInput(f"{where} lacks {e}: every field of the schema is needed (see profiles/hardware)") from None


def _sourced(d: dict, key: str, where: str) -> Sourced:
    v = d[key]
    if not isinstance(v, dict) or not isinstance(v.get("value"), int | float) or not str(v.get("source", "")).strip():
        raise BadInput(f"{where}: {key} needs a numeric value and a source line")
    if v["value"] <= 0:
        raise BadInput(f"{where}: {key} must be positive, not {v['value']}")
    return Sourced(value=float(v["value"]), source=str(v["source"]), points=_points(v, f"{where}: {key}"))


def _points(d: dict, where: str) -> list[list[float]] | None:
    """A measured curve, [[size, value], ...]: two or more positive sizes, each once (a curve is
    read between its points), positive values."""
    points = d.get("points")
    if points is None:
        return None
    ok = isinstance(points, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int | float) and x > 0 for x in p) for p in points
    )
    if not ok or len(points) < 2 or len({p[0] for p in points}) < len(points):
        raise BadInput(
            f"{where}: points must be [[size, value], ...] of positive numbers at two sizes or more, each size once"
        )
    return points


def _allreduce(a: dict, where: str) -> AllReduce:
    nums = ("tp", "busbw_gb_s", "latency_us")
    if not all(isinstance(a.get(k), int | float) and a[k] > 0 for k in nums) or not str(a.get("source", "")).strip():
        raise BadInput(f"{where}: each allreduce entry needs positive tp, busbw_gb_s, latency_us and a source")
    points = _points(a, f"{where}: allreduce tp {a['tp']}")
    return AllReduce(
        tp=int(a["tp"]),
        busbw_gb_s=float(a["busbw_gb_s"]),
        latency_us=float(a["latency_us"]),
        source=str(a["source"]),
        points=points,
    )
