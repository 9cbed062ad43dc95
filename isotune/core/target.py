"""Target: what a command runs on, resolved and checked once in the launching process
(engine.target.resolve_target) and carried to every rank as one object. Each rank builds its
model from it (engine.launch); nothing about it travels through the environment.

A new capability of the machine a command runs on (a link, a stand-in world) is a field here,
its flag in cli.py, and the code that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from isotune.core.errors import BadInput
from isotune.core.link import Link
from isotune.core.spec import ModelSpec


def backend_for(world: int, device: str) -> str | None:
    """The process-group backend ranks on `device` use; None for a single rank (no group)."""
    if world == 1:
        return None
    return "nccl" if device == "cuda" else "gloo"


DEFAULT_MODEL = "tiny"  # the preset a command runs without --model


@dataclass(frozen=True, kw_only=True)
class TargetFlags:
    """The flags every prefill command shares, as typed: what resolve_target checks."""

    model: str | None = None  # a preset name or a checkpoint folder; None: DEFAULT_MODEL
    layers: int | None = None  # keep only the first N layers
    tp: str | None = None  # ranks; None: 1, or the launcher's WORLD_SIZE
    dtype: str = "auto"
    device: str = "auto"
    threads: int = 1  # compute threads per CPU rank
    seed: int = 0  # synthetic weights and seeded prompts
    compile: bool = False  # fused elementwise steps (engine.fused)
    comm_ctas: str | None = None  # NCCL's CTA cap: one count (search: several, one search each)
    link: str | None = None  # an emulated interconnect (core.link)
    ranks: str | None = None  # processes: every rank (the default), or 1, a stand-in for the TP size


@dataclass(frozen=True, kw_only=True)
class Target:
    """A checked target: the model (its layers cut), the ranks and where they run."""

    spec: ModelSpec
    tp: int
    dtype: str  # resolved: float32, bfloat16 or float16
    device: str  # resolved: cpu or cuda
    threads: int = 1
    seed: int = 0
    compile: bool = False
    comm_ctas: int | None = None  # NCCL's maxCTAs for the group; None: NCCL's choice
    max_len: int  # positions the KV cache holds: the longest prompt (plus what run decodes)
    decode: bool = False  # the model will decode one token at a time (compiled steps cover it)
    link: Link | None = None  # the all-reduces' completion held to an emulated link's time
    ranks: int | None = None  # processes: None, every rank; 1, a stand-in computing rank 0's shard alone
    slots: int = 1  # sequences the KV cache holds at once: run's --max-seqs (a pack's prompts)
    prefill_tokens: int = 0  # the most tokens one forward carries (a pack's), where above max_len

    @property
    def processes(self) -> int:
        return self.ranks or self.tp

    @property
    def stand_in(self) -> bool:
        """One process computing rank 0's shard of a TP-N model, every all-reduce the link's time alone."""
        return self.processes == 1 and self.tp > 1

    @property
    def held_on_gpu(self) -> bool:
        """A GPU stand-in on an emulated link: its all-reduces are the link's hold kernel (the only
        GPU run --link is allowed on), whose CTAs --comm-ctas sets."""
        return self.device == "cuda" and self.link is not None

    @property
    def backend(self) -> str | None:
        return backend_for(self.processes, self.device)

    def with_(self, **changes) -> Target:
        return replace(self, **changes)


def parse_counts(
    raw: str, flag: str, noun: str, *, many: bool = False, most: int | None = None, example: str
) -> list[int]:
    """A flag of whole counts: one ('8'), or where `many` several ('4,8,16'); each 1..`most`."""
    try:
        values = [int(x) for x in str(raw).split(",")]
    except ValueError:
        values = []
    if not values or any(not 1 <= v <= (most or v) for v in values) or (len(values) > 1 and not many):
        each = f"1..{most}" if most else "at least 1"
        what = f"{noun}s separated by commas, e.g. {example}, each {each}" if many else f"one {noun}, {each}"
        raise BadInput(f"{flag} {raw!r} must be {what}")
    return values


# NCCL clamps maxCTAs to its channel limit (64) with only a warning: a plan would record a cap
# that never applied
MAX_COMM_CTAS = 64


def parse_ctas(raw: str | None, many: bool = False) -> list[int]:
    """--comm-ctas: '8' (or '4,8,16' where `many`) -> CTA caps; [] when not given."""
    if raw is None:
        return []
    return parse_counts(raw, "--comm-ctas", "CTA count", many=many, most=MAX_COMM_CTAS, example="4,8,16")


def parse_tp(raw: str | None, many: bool = False) -> list[int]:
    """--tp: '2' (or '4,8' where `many`, as estimate takes it) -> TP sizes; [] when not given."""
    if raw is None:
        return []
    return parse_counts(raw, "--tp", "TP size", many=many, example="4,8")
