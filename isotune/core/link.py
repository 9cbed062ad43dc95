"""An emulated interconnect (`--link SPEC`): how long one all-reduce of a message takes on a link
this machine does not have. The all-reduce still runs for real on whatever transport the ranks
have (values stay exact); engine.link holds its completion until the emulated link would have
delivered it, one transfer at a time, and never earlier than the real one.

A spec is a link model or a catalog entry:
  1gbit, 500mbit, 12GB/s          a rate alone (bits or bytes per second), no latency of its own,
                                  like a tc-shaped link
  25us,12GB/s   (or 0.5ms,1gbit)  a latency and a rate
  rtx4090, h100-sxm, ...          the catalog's all-reduce at the run's TP size: its measured
                                  curve by message size where it has one, else its latency and
                                  large-message bus bandwidth (profiles/hardware)

A model link's all-reduce takes latency + 2(n-1)/n · bytes / rate, a ring's traffic through
each rank's link (nccl-tests' bus bandwidth is that rate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from isotune.core.errors import BadInput
from isotune.core.fit import interp

# On a GPU stand-in the link's time is a kernel holding CTAs as NCCL's all-reduce does
# (engine.comm_hold): how many (NCCL takes 8-32 channels on NVLink by message size and topology;
# --comm-ctas sets it), and their shape, NCCL's usual block. Files record both.
GPU_HOLD_CTAS = 16
GPU_HOLD_THREADS = 512

_RATE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>gbit|mbit|kbit|gb/s|mb/s)", re.IGNORECASE)
_LATENCY = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>us|µs|ms|s)", re.IGNORECASE)
_BYTES_PER_S = {"gbit": 1e9 / 8, "mbit": 1e6 / 8, "kbit": 1e3 / 8, "gb/s": 1e9, "mb/s": 1e6}
_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
FORMS = "a rate (1gbit, 500mbit, 12GB/s), a latency and a rate (25us,12GB/s), or a catalog entry"


@dataclass(frozen=True, kw_only=True)
class Link:
    """One emulated link, fixed for a TP size: an all-reduce's time by message size."""

    spec: str  # as given: '1gbit', '25us,12GB/s', 'h100-sxm'
    latency_ms: float
    ms_per_mb: float  # of the whole message: 2(n-1)/n / rate
    table: list[list[float]] | None = None  # a catalog curve [[MB, ms], ...]: read between its points
    source: str  # where the numbers come from, said wherever they appear

    def allreduce_ms(self, nbytes: int) -> float:
        mb = nbytes / 1e6
        if self.table:
            return interp(self.table, mb)
        return self.latency_ms + self.ms_per_mb * mb

    def interconnect(self) -> str:
        """How profiles, plans and traces name it: 'emulated 1gbit'."""
        return f"emulated {self.spec}"

    def record(self) -> dict:
        """The parameters files carry beside the name."""
        out = {"spec": self.spec, "latency_ms": self.latency_ms, "ms_per_mb": self.ms_per_mb, "source": self.source}
        return out | ({"table": self.table} if self.table else {})


def model_link(spec: str, latency_s: float, bytes_per_s: float, tp: int) -> Link:
    """latency + 2(n-1)/n · bytes / rate."""
    ring = 2 * (tp - 1) / tp
    return Link(
        spec=spec,
        latency_ms=latency_s * 1e3,
        ms_per_mb=ring * 1e6 / bytes_per_s * 1e3,
        source=f"link model: {latency_s * 1e6:g} us + {ring:g} x bytes / {bytes_per_s / 1e9:g} GB/s",
    )


def parse_link(spec: str, tp: int, catalog: dict) -> Link:
    """--link SPEC at `tp` ranks (2 or more); `catalog` maps entry names to their (latency ms,
    ms per MB, table, source) at a TP size (core.analytic.catalog_links reads them)."""
    raw = spec.strip()
    if tp < 2:
        raise BadInput(f"--link {spec} emulates the all-reduces of tp 2 or more; at tp {tp} there are none")
    if raw.lower() in catalog:
        latency_ms, ms_per_mb, table, source = catalog[raw.lower()](tp)
        return Link(spec=raw.lower(), latency_ms=latency_ms, ms_per_mb=ms_per_mb, table=table, source=source)
    parts = [p.strip() for p in raw.split(",")]
    rate = _RATE.fullmatch(parts[-1]) if parts else None
    latency = _LATENCY.fullmatch(parts[0]) if len(parts) == 2 else None
    if rate is None or len(parts) > 2 or (len(parts) == 2 and latency is None):
        if len(parts) == 1 and not any(c.isdigit() for c in raw):
            raise BadInput(
                f"--link {spec!r} is not in the catalog: use one of {', '.join(sorted(catalog))}, or {FORMS}"
            )
        raise BadInput(f"--link {spec!r} does not parse: give {FORMS}")
    bytes_per_s = float(rate["n"]) * _BYTES_PER_S[rate["unit"].lower()]
    latency_s = float(latency["n"]) * _SECONDS[latency["unit"].lower()] if latency else 0.0
    if bytes_per_s <= 0:
        raise BadInput(f"--link {spec!r}: the rate must be more than 0")
    if latency is not None and latency_s <= 0:
        raise BadInput(f"--link {spec!r}: a latency given must be more than 0 (or give the rate alone)")
    return model_link(raw, latency_s, bytes_per_s, tp)
