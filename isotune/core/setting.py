"""The setting a measurement was made in, beyond model and TP size: what a plan or profile
must match to say anything about this run."""

from __future__ import annotations

from isotune.core.errors import BadInput

# what a split's timing depends on: compile (fused elementwise steps change the compute time)
# and comm (NCCL's stream priority and channel knobs change what an all-reduce takes from it)
SETTING_KEYS = ("dtype", "backend", "device", "interconnect", "compile", "comm")


def said(value) -> str:
    """A setting as a user would type it: {'env': {'NCCL_MAX_NCHANNELS': '8'}} -> NCCL_MAX_NCHANNELS=8."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "none":  # the backend of a single rank: no process group at all
        return "none (one rank, no process group)"
    if isinstance(value, dict):
        said = [f"{k}={v}" for k, v in value.get("env", {}).items()]
        said += [f"--comm-ctas {value['max_ctas']}"] if value.get("max_ctas") else []
        said += (
            [f"a link hold of {value['hold_ctas']} CTAs x {value.get('hold_threads')} threads"]
            if value.get("hold_ctas")
            else []
        )
        return " ".join(said) or "NCCL defaults"
    return str(value)


def setting_problems(made_in: dict, now: dict | None, what: str) -> list[str]:
    """'the plan was made for dtype float32, not bfloat16', one per SETTING_KEYS value that
    differs; a key either side lacks (files from older versions, a check made before launch
    that cannot know it) is not checked, nor an interconnect that could not be read ("unknown":
    nvidia-smi missing or slow), which says nothing either way."""
    problems = []
    for key in SETTING_KEYS:
        made, run = made_in.get(key), (now or {}).get(key)
        if made is not None and run is not None and made != run and "unknown" not in (made, run):
            label = "compiled steps" if key == "compile" else key
            problems.append(f"{what} for {label} {said(made)}, not {said(run)}")
    return problems


def refuse_or_warn(problems: list[str], force: bool, redo: str) -> list[str]:
    """A file made for something else: refused in one line (BadInput) naming every difference and
    `redo`, unless `force`, where each becomes a warning to print."""
    if problems and not force:
        raise BadInput(f"{'; '.join(problems)}: {redo}, or pass --force to use it anyway")
    return [f"warning: {p} (--force)" for p in problems]
