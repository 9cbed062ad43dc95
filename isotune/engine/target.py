"""The run target checked as a whole before any rank starts: model, checkpoint files, TP size,
device, launcher, dtype and memory must agree, so a mismatch is one line and exit 2, not a
failed rank."""

from __future__ import annotations

import sys

from isotune.core.shard import check_tp
from isotune.core.spec import ModelSpec, load_spec, resolve_dtype
from isotune.engine import dist, launcher
from isotune.engine.memory import check_host_memory
from isotune.engine.weights import check_checkpoint


def resolve_target(model: str, layers: int | None, tp: int | None, device: str) -> tuple[ModelSpec, int, str]:
    """Check model, TP size and device together, before any rank starts: (spec, tp, device)."""
    spec = load_spec(model, layers)
    check_checkpoint(spec)
    tp = launcher.default_tp(tp)
    check_tp(spec, tp)
    device = dist.resolve_device(device)
    dist.check_world(tp, device)
    return spec, tp, device


def fit_target(spec: ModelSpec, tp: int, device: str, dtype: str, max_len: int) -> str:
    """--dtype resolved (auto: see core.spec.resolve_dtype, said on stderr) and the memory the
    ranks will need checked against the host's: the dtype to run."""
    dtype, note = resolve_dtype(dtype, spec)
    if dtype == "float32" and device == "cuda":  # only an explicit --dtype float32 gets here
        note = (
            "warning: float32 on GPUs runs without flash attention, far below the tensor cores' bf16 "
            "peak and with twice the all-reduce bytes: splits tuned so fit no deployment (--dtype auto)"
        )
    if note and launcher.launch_rank() == 0:
        print(note, file=sys.stderr)
    check_host_memory(spec, tp, dtype, max_len, device)
    return dtype
