"""--comm-ctas: checked before any rank starts, and handed to the ranks (engine.group reads it
when it makes the NCCL group). A plan searched with a cap brings it to `run --plan`."""

from __future__ import annotations

import os
import sys

from isotune.core.errors import BadInput
from isotune.engine.dist import backend_for
from isotune.engine.group import COMM_CTAS_ENV


def parse_ctas(raw: str | None, many: bool = False) -> list[int]:
    """'8' (or '4,8,16' where `many`) -> CTA caps; [] when not given."""
    if raw is None:
        return []
    try:
        values = [int(x) for x in str(raw).split(",")]
    except ValueError:
        values = []
    # NCCL clamps maxCTAs to its channel limit (64) with only a warning: a plan would record a
    # cap that never applied
    if not values or any(not 1 <= v <= 64 for v in values) or (len(values) > 1 and not many):
        what = "CTA counts of 1..64 separated by commas, e.g. 4,8,16" if many else "one CTA count of 1..64, e.g. 8"
        raise BadInput(f"--comm-ctas {raw!r} must be {what}")
    return values


def parse_cap(raw: str | None) -> int | None:
    """--comm-ctas of run, profile and bench: one cap, or None when not given."""
    caps = parse_ctas(raw)
    return caps[0] if caps else None


def set_ctas(ctas: int | None, tp: int, device: str) -> None:
    """Hand the cap to the ranks (None: NCCL's own choice); only NCCL has one."""
    if ctas is not None and backend_for(tp, device) != "nccl":
        raise BadInput(
            f"--comm-ctas caps the SMs an NCCL all-reduce takes: it needs a GPU run with --tp 2 or more "
            f"(this one is tp {tp} on {device})"
        )
    if ctas is None:
        os.environ.pop(COMM_CTAS_ENV, None)
    else:
        os.environ[COMM_CTAS_ENV] = str(ctas)


def plan_ctas(topology: dict, given: int | None) -> int | None:
    """The cap a run uses: --comm-ctas when given, else the one its plan was searched with (said
    in one line), else none."""
    made = (topology.get("comm") or {}).get("max_ctas")
    if given is None and made:
        print(f"note: using the plan's --comm-ctas {made} (it was searched with that cap)", file=sys.stderr)
        return int(made)
    return given
