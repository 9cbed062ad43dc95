"""The run target checked as a whole before any rank starts: model, checkpoint files, TP size,
device and launcher must agree, so a mismatch is one line and exit 2, not a failed rank."""

from __future__ import annotations

from isotune.core.shard import check_tp
from isotune.core.spec import ModelSpec, load_spec
from isotune.engine import dist
from isotune.engine.weights import check_checkpoint


def resolve_target(model: str, layers: int | None, tp: int | None, device: str) -> tuple[ModelSpec, int, str]:
    """Check model, TP size and device together, before any rank starts: (spec, tp, device)."""
    spec = load_spec(model, layers)
    check_checkpoint(spec)
    tp = dist.default_tp(tp)
    check_tp(spec, tp)
    device = dist.resolve_device(device)
    dist.check_world(tp, device)
    return spec, tp, device
