"""Memory on this host and device: what is available against what a rank needs (core.memory),
and whether the kernel's out-of-memory killer has struck (to name it when a rank dies by
SIGKILL).

`ISOTUNE_MEMORY_CHECK=0` skips the refusal, for the day the estimate is wrong for a setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from isotune.core.errors import BadInput
from isotune.core.memory import gib, rank_need
from isotune.core.spec import ModelSpec, layers_text

FIX = "use --layers N (a few suffice for timing), a 2-byte --dtype, or more machines"


def fix_for(dtype: str) -> str:
    if dtype == "float32":
        return "use --layers N (a few suffice for timing), --dtype bfloat16, or more machines"
    return "use --layers N (a few suffice for timing), or more machines"


def checking() -> bool:
    return os.environ.get("ISOTUNE_MEMORY_CHECK", "1") != "0"


def check_host_memory(
    spec: ModelSpec,
    tp: int,
    dtype: str,
    max_len: int,
    device: str,
    processes: int | None = None,
    slots: int = 1,
    prefill_tokens: int | None = None,
) -> None:
    """Before launch: refuse when the ranks this host runs need more RAM than it has. GPU ranks
    check their device instead (check_device_memory), once they own it."""
    if device != "cpu" or not checking():
        return
    need = rank_need(spec, tp, dtype, max_len, prefill_tokens or max_len, slots)
    ranks = local_ranks(processes or tp)  # a stand-in: one process of a tp-sized shard
    avail = available_bytes()
    if need.total * ranks > avail:
        many = f"{ranks} ranks here need {gib(need.total * ranks)}" if ranks > 1 else "it needs that"
        raise BadInput(
            f"{spec.name} ({layers_text(spec.layers)}) at tp {tp} in {dtype} needs about {need.summary()} per rank; "
            f"{many}, and {gib(avail)} is available: {fix_for(dtype)}"
        )


def check_device_memory(
    spec: ModelSpec,
    tp: int,
    dtype: torch.dtype,
    max_len: int,
    device: torch.device,
    slots: int = 1,
    prefill_tokens: int | None = None,
) -> None:
    """On a rank, before its weights are allocated: the same refusal against the GPU's free memory."""
    if device.type != "cuda" or not checking():
        return
    name = str(dtype).removeprefix("torch.")
    need = rank_need(spec, tp, name, max_len, prefill_tokens or max_len, slots)
    free, _ = torch.cuda.mem_get_info(device)
    if need.total > free:
        raise BadInput(
            f"{spec.name} ({layers_text(spec.layers)}) at tp {tp} needs about {need.summary()} per GPU; "
            f"cuda:{device.index} has {gib(free)} free: {fix_for(name)}"
        )


def local_ranks(tp: int) -> int:
    """Ranks sharing this host's memory: all of them when spawned here; under a launcher, what
    it says (torchrun's LOCAL_WORLD_SIZE), else this process alone."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return tp


def available_bytes() -> int:
    """MemAvailable, capped by this process's cgroup limit (containers) when it has one."""
    avail = _meminfo().get("MemAvailable", 1 << 62)
    limit, usage = _cgroup_limit_usage()
    if limit is not None and usage is not None:
        avail = min(avail, max(0, limit - usage))
    return avail


def oom_kills() -> int:
    """The kernel's count of out-of-memory kills on this host (cgroup limits' kills included)."""
    count = 0
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                count += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return count


def _meminfo() -> dict[str, int]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _cgroup_limit_usage() -> tuple[int | None, int | None]:
    """(limit, usage) of this process's memory cgroup, v2 or v1; None where there is none."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:  # hybrid hosts list both; the first that has a limit counts
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit, usage = _read_int(base / "memory.max"), _read_int(base / "memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit, usage = _read_int(base / "memory.limit_in_bytes"), _read_int(base / "memory.usage_in_bytes")
        else:
            continue
        if limit is not None:
            return limit, usage
    return None, None


def _read_int(path: Path) -> int | None:
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):  # "max" (no limit), or not mounted here
        return None
    return value if value < (1 << 60) else None  # v1's "no limit" is a huge number
