"""Profile: what `isotune profile` measured, its fitted cost constants, and its YAML form.

Pure Python (no torch): the cost model and the search read profiles without touching a GPU.

Fitted forms (per layer, per rank, in ms):
  attn_ms(q, p)  = table(q) + per_pair*q*p       q query tokens, p prefix tokens: the table holds
                                                  a chunk at prefix 0 (its own causal triangle),
                                                  a prefix adds q*p (query, key) pairs
  mlp_ms(t)      = table(t)                       piecewise linear through the measured shapes
  allreduce_ms(n)= latency_ms + n_bytes / 1e6 * ms_per_mb, or a table by size (analytic
                   profiles from a catalog entry that measured its link by message size)
Tables come from ops timed inside real prefills (core.fit); profiles written before them carry
lines instead (attn = a0 + a1*q + a2*q*(p + q/2), mlp = b0 + b1*t), still read. An all-reduce
starts sync_skew x its producer's time late (the slower rank's lag, which a split can hide) and
takes comm_scale x its isolated time inside a prefill.
While an all-reduce is in flight, compute runs (1 + compute_slowdown) times slower.

Links shaped by a token bucket (Linux tc tbf, cloud NIC rate limits) send the first burst_mb of
a message that follows an idle gap at burst_ms_per_mb instead of ms_per_mb; the bucket refills
at the link rate (1/ms_per_mb MB per ms). burst_mb = 0 is a plain link.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from isotune.core.errors import BadInput
from isotune.core.files import atomic_write_text, read_yaml
from isotune.core.fit import interp
from isotune.core.setting import refuse_or_warn, setting_problems
from isotune.core.spec import ModelSpec

PROFILE_VERSION = 1


@dataclass(kw_only=True)
class CostFit:
    attn: list[float]  # [a0, a1, a2]
    mlp: list[float]  # [b0, b1]
    latency_ms: float
    ms_per_mb: float
    compute_slowdown: float = 0.0
    burst_mb: float = 0.0
    burst_ms_per_mb: float = 0.0
    # measured inside real prefills (profiles from isotune >= 0.2; older ones keep the lines above):
    attn_table: list[list[float]] | None = None  # [[query tokens, ms at prefix 0], ...]
    attn_ms_per_pair: float = 0.0  # ms per (query, prefix) token pair
    mlp_table: list[list[float]] | None = None  # [[tokens, ms], ...]
    # fitted on whole prefills (baseline and 50/50 at every profiled length): ranks drift apart,
    # so an all-reduce starts when the slower rank gets there, this share of the producing op's
    # time after the typical one; and an all-reduce inside a prefill takes comm_scale x its
    # isolated time (contention with compute, a link never quite idle)
    sync_skew: float = 0.0
    comm_scale: float = 1.0
    # GPUs: the host's ms to issue one attention / MLP op (its kernel launches). The GPU cannot
    # run an op before the host has issued it, so where these exceed the GPU's times the host
    # sets the pace (launch-bound). 0 on CPU ranks, where the host's time is the compute.
    host_attn_ms: float = 0.0
    host_mlp_ms: float = 0.0
    # GPUs: the GPU's own ms for layer 0's attention (prefix 0) and MLP by chunk tokens
    # ([[tokens, ms], ...]), every kernel queued before the first runs. The tables above are
    # timed inside prefills, where a host-bound op shows the host's pace, so they cannot say
    # which of the two is slower; this can. None on CPU ranks and in older profiles; [] where no
    # size's GPU time could be separated.
    gpu_layer_table: list[list[float]] | None = None
    # an all-reduce timed by message size ([[MB, ms], ...]): a catalog entry's measured curve,
    # which a line (latency + ms/MB) fits badly at the 0.5-5 MB of short chunks
    allreduce_table: list[list[float]] | None = None

    def attn_ms(self, q: int, p: int) -> float:
        if self.attn_table:
            return interp(self.attn_table, q) + self.attn_ms_per_pair * q * p
        a0, a1, a2 = self.attn
        return max(0.0, a0 + a1 * q + a2 * q * (p + q / 2))

    def mlp_ms(self, t: int) -> float:
        if self.mlp_table:
            return interp(self.mlp_table, t)
        b0, b1 = self.mlp
        return max(0.0, b0 + b1 * t)

    def allreduce_ms(self, n_bytes: int, tokens_mb: float = 0.0) -> float:
        """One all-reduce of n_bytes when the link's bucket holds tokens_mb (0: back-to-back)."""
        mb = n_bytes / 1e6
        if self.allreduce_table and not self.burst_mb:  # from 0 MB up; past the last size, its last segment
            return interp(self.allreduce_table, mb)
        fast = min(mb, tokens_mb)
        return self.latency_ms + fast * self.burst_ms_per_mb + (mb - fast) * self.ms_per_mb


@dataclass(kw_only=True)
class Profile:
    model: dict  # {name, fingerprint, hidden, layers}
    topology: dict  # {tp, backend, device, device_count, interconnect, hosts, dtype}
    software: dict  # {isotune, torch}
    fit: CostFit
    attn_samples: list[list[float]] = field(default_factory=list)  # [q, p, ms]
    mlp_samples: list[list[float]] = field(default_factory=list)  # [tokens, ms]
    allreduce_samples: list[list[float]] = field(default_factory=list)  # [bytes, ms] back-to-back
    allreduce_idle_samples: list[list[float]] = field(default_factory=list)  # [bytes, ms] after an idle gap
    slowdown_samples: list[list[float]] = field(default_factory=list)  # [compute_ms, comm_ms, together_ms]
    check_samples: list[list] = field(default_factory=list)  # [seq_len, variant, measured_ms, predicted_ms]
    source: str = "measured"  # or "model": computed from a hardware catalog entry (core.analytic)
    assumptions: list[str] = field(default_factory=list)  # what a model-sourced profile rests on

    @property
    def dtype_bytes(self) -> int:
        return {"float32": 4, "bfloat16": 2, "float16": 2}[self.topology["dtype"]]

    @property
    def hidden(self) -> int:
        return int(self.model["hidden"])


def profile_to_yaml(p: Profile) -> str:
    d = {"isotune_profile": PROFILE_VERSION} | dataclasses.asdict(p)
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=120)


def save_profile(p: Profile, path: str | Path) -> None:
    atomic_write_text(path, profile_to_yaml(p))


def load_profile(path: str | Path) -> Profile:
    d = read_yaml(path, "profile", "isotune profile")
    if not isinstance(d, dict) or d.get("isotune_profile") != PROFILE_VERSION:
        raise BadInput(f"{path} is not an isotune profile (version {PROFILE_VERSION}): re-run isotune profile")
    try:
        d.pop("isotune_profile")
        d["fit"] = CostFit(**d["fit"])
        prof = Profile(**d)
        _ = [prof.model[key] for key in ("name", "fingerprint", "hidden", "layers")], prof.dtype_bytes
    except (TypeError, KeyError) as e:
        raise BadInput(f"profile {path} is malformed ({e}): re-run isotune profile") from None
    return prof


def check_profile_fits(
    prof: Profile,
    spec: ModelSpec,
    tp: int | None,
    what: str = "--profile",
    setting: dict | None = None,
    force: bool = False,
) -> list[str]:
    """A profile measured on another model (any layer count) or TP size predicts nothing here
    (tp None: the TP size is the profile's own). One measured in another setting (dtype,
    backend, device, interconnect, compile, comm knobs: core.setting) is refused unless `force`;
    returns the warnings that --force leaves."""
    # the same model at the profile's layer count (which may be more or fewer than this run's)
    measured_on = dataclasses.replace(spec, layers=int(prof.model["layers"])).fingerprint()
    still = " (--force does not cover this: its costs say nothing about another model or TP size)" if force else ""
    if prof.model["fingerprint"] != measured_on:
        raise BadInput(
            f"{what} was measured on {prof.model['name']!r}, not {spec.name!r}: profile this model first{still}"
        )
    if tp is not None and int(prof.topology["tp"]) != tp:
        raise BadInput(
            f"{what} was measured at tp {prof.topology['tp']}, not tp {tp}: profile this TP size first{still}"
        )
    made = "measured" if prof.source == "measured" else "computed"  # an analytic profile: for its hardware
    return refuse_or_warn(setting_problems(prof.topology, setting, f"{what} was {made}"), force, "profile this setup")
