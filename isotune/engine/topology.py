"""What a group of ranks runs on: the topology and software header that profiles and plans
carry, so a plan names what it is valid for. Built once, here, for both."""

from __future__ import annotations

import platform

import torch

from isotune import __version__
from isotune.engine import dist
from isotune.engine.dist import DistInfo


def describe(info: DistInfo, dtype: str, threads: int) -> tuple[dict, dict]:
    """(topology, software) of this group. A collective: every rank must call it."""
    hosts = len(set(dist.gather_objects(platform.node(), info)))
    topology = {
        "tp": info.world,
        "backend": info.backend or "none",
        "device": device_name(info),
        "device_count": info.world,
        "interconnect": interconnect(info),
        "hosts": hosts,
        "dtype": dtype,
        "threads_per_rank": threads if info.device.type == "cpu" else None,
    }
    return topology, software()


def run_setting(tp: int, device: str, dtype: str) -> dict:
    """What a plan must have been made for (core.plan.SETTING_KEYS), known before any rank
    starts: a split tuned for gloo on CPUs in float32 says nothing about NCCL in bfloat16."""
    info = DistInfo(
        rank=0,
        world=tp,
        local_rank=0,
        device=torch.device(device, 0) if device == "cuda" else torch.device("cpu"),
        backend=None,
        launched=dist.launched_externally(),
    )
    backend = dist.backend_for(tp, device) or "none"  # as describe() writes a single rank's
    return {"dtype": dtype, "backend": backend, "device": device_name(info), "interconnect": interconnect(info)}


def setting(info: DistInfo, model: str, layers: int, dtype: str) -> str:
    """What a measurement ran on, for titles: 'small (2 layers), tp 2 gloo on cpu, bfloat16'."""
    return f"{model} ({layers} layers), tp {info.world} {info.backend or 'single'} on {info.device.type}, {dtype}"


def software() -> dict:
    """Versions that shaped a measurement; torch's local suffix (+cu121, +cpu) is kept: it names
    the CUDA build, which changes kernels and NCCL."""
    return {"isotune": __version__, "torch": str(torch.__version__)}


def device_name(info: DistInfo) -> str:
    if info.device.type == "cuda":
        return torch.cuda.get_device_name(info.device)
    return f"cpu ({platform.processor() or platform.machine()})"


def interconnect(info: DistInfo) -> str:
    """nvlink / pcie between GPUs (from nvidia-smi topo -m), loopback for local CPU ranks,
    network for ranks a launcher placed (possibly on other hosts)."""
    if info.device.type == "cuda":
        import subprocess

        try:
            topo = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        return "nvlink" if any(tok.startswith("NV") and tok[2:].isdigit() for tok in topo.split()) else "pcie"
    return "network" if info.launched else "loopback"
