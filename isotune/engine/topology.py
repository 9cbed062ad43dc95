"""What a group of ranks runs on: the topology and software header that profiles and plans
carry, so a plan names what it is valid for. Built once, here, for both."""

from __future__ import annotations

import itertools
import os
import platform
import re
import subprocess

import torch

from isotune import __version__
from isotune.core.spec import layers_text
from isotune.core.target import Target
from isotune.engine import dist, launcher
from isotune.engine.group import comm_setting
from isotune.engine.model import TPModel
from isotune.engine.rank import DistInfo

SMI_TIMEOUT_S = 10.0
# what a stand-in's numbers cannot show, recorded with them
STAND_IN = (
    "rank 0's shard alone, every all-reduce the emulated link's time: no rank skew, no slow peer, no peer's CPU work"
)
PCIE_LINKS = {"PIX", "PXB", "PHB", "NODE", "SYS", "SOC"}  # SOC: older drivers' name for SYS
_NVLINK = re.compile(r"NV\d+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # some drivers underline the matrix header
_PCI = re.compile(r"([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)(?:\.[0-7])?", re.IGNORECASE)


def dtype_name(model: TPModel) -> str:
    return str(model.dtype).removeprefix("torch.")


def describe(info: DistInfo, dtype: str, compiled: bool = False) -> tuple[dict, dict]:
    """(topology, software) of this group, running a model in `dtype` (its elementwise steps
    `compiled` or not). A collective: every rank must call it."""
    # each rank names its own GPU: a launcher may give every rank its own CUDA_VISIBLE_DEVICES,
    # so ordinals alone could all read 0
    gpu = gpu_indices([info.device.index or 0])[0] if info.device.type == "cuda" else None
    placed = dist.gather_objects((platform.node(), gpu), info)
    hosts = len({host for host, _ in placed})
    topology = (
        {
            "tp": info.tp,
            "backend": info.backend or "none",
            "device": device_name(info.device),
            "device_count": info.world,
            # a launcher that places each rank as its own host (benchmarks/netns.py: a network namespace per rank,
            # LOCAL_WORLD_SIZE=1) shares the host name but not a link: its word counts too
            "interconnect": info.link.interconnect()
            if info.link
            else group_link(info.device.type, hosts == 1 and ranks_share_host(), [g for _, g in placed]),
            "hosts": hosts,
            "dtype": dtype,
            "threads_per_rank": torch.get_num_threads() if info.device.type == "cpu" else None,  # as the launch set it
            "compile": compiled,
            "comm": comm_setting(info.backend, info.comm_ctas, info.link is not None and info.device.type == "cuda"),
        }
        | ({"link": info.link.record()} if info.link else {})
        | ({"stand_in": STAND_IN} if info.stands_for else {})
    )
    return topology, software()


def run_setting(target: Target) -> dict:
    """What a plan or profile must have been made for (core.setting.SETTING_KEYS), known before
    any rank starts: a split tuned for gloo on CPUs in float32 says nothing about NCCL in bfloat16."""
    device = torch.device(target.device, 0) if target.device == "cuda" else torch.device("cpu")
    one_host = ranks_share_host()
    # ranks on one host use CUDA devices 0..tp-1 (dist: the local rank is the device ordinal)
    gpus = gpu_indices(list(range(target.tp))) if target.device == "cuda" and one_host else []
    return {
        "dtype": target.dtype,
        "backend": target.backend or "none",  # as describe() writes a single rank's
        "device": device_name(device),
        "interconnect": target.link.interconnect() if target.link else group_link(target.device, one_host, gpus),
        "compile": target.compile,
        "comm": comm_setting(target.backend, target.comm_ctas, target.held_on_gpu),
    }


def ranks_share_host() -> bool:
    """Whether the ranks about to start share this host: spawned ranks do; a launcher's do iff it
    starts all WORLD_SIZE of them here (torchrun's LOCAL_WORLD_SIZE). A launcher that does not
    say is taken as several hosts; describe() then writes what it finds, and a plan check names
    the difference."""
    if not launcher.launched_externally():
        return True
    return os.environ.get("LOCAL_WORLD_SIZE", "").strip() == str(launcher.default_tp(None))


def group_link(device_type: str, one_host: bool, gpus: list[int | None]) -> str:
    """How the group's all-reduces travel: network (hosts apart), loopback (CPU ranks on one
    host), none (one GPU), else the slowest link between its GPUs (nvidia-smi indices, None where
    unknown). One rule for describe() (what ranks find) and run_setting() (what they will find)."""
    if not one_host:
        return "network"
    if device_type != "cuda":
        return "loopback"
    if len(gpus) < 2:
        return "none"
    if any(g is None for g in gpus):
        return "unknown"
    return link_between(smi("topo", "-m") or "", gpus)


def link_between(topo_text: str, gpus: list[int]) -> str:
    """The link among `gpus` (nvidia-smi indices) in `nvidia-smi topo -m`'s matrix: nvlink when
    every pair is NV#, pcie when any pair is not (a ring all-reduce runs at its slowest hop),
    none for one GPU, unknown when the matrix, a GPU or a cell cannot be read."""
    if len(gpus) < 2:
        return "none"
    cells = topo_cells(topo_text)
    kinds = {_link_kind(cells.get((f"GPU{a}", f"GPU{b}"))) for a, b in itertools.combinations(gpus, 2)}
    if "unknown" in kinds:
        return "unknown"
    return "nvlink" if kinds == {"nvlink"} else "pcie"


def plain(text: str) -> str:
    """text without terminal colour codes (nvidia-smi underlines its matrix header on some drivers)."""
    return _ANSI.sub("", text)


def topo_cells(topo_text: str) -> dict[tuple[str, str], str]:
    """{(row, column): cell} of `nvidia-smi topo -m`'s matrix; {} when there is none. The
    affinity columns and the legend after the blank line are not links and are left out."""
    lines = plain(topo_text).splitlines()
    for n, line in enumerate(lines):
        head = line.split()
        if head[:1] == ["GPU0"] and head[1:2] != ["X"]:  # the header, not GPU0's own row
            columns = list(itertools.takewhile(lambda t: t != "CPU", head))  # 'CPU Affinity' on
            cells: dict[tuple[str, str], str] = {}
            for row in itertools.takewhile(str.strip, lines[n + 1 :]):  # a blank line ends it
                label, *values = row.split()  # a GPU row's affinities follow its links: zip drops them
                cells.update({(label, col): value for col, value in zip(columns, values, strict=False)})
            return cells
    return {}


def _link_kind(cell: str | None) -> str:
    if cell is not None and _NVLINK.fullmatch(cell):
        return "nvlink"
    return "pcie" if cell in PCIE_LINKS else "unknown"  # X (self), N/A, garbage: unknown


def pci_address(text: str) -> tuple[int, int, int] | None:
    """(domain, bus, device) of a PCI address: nvidia-smi writes 00000000:1A:00.0, sysfs
    0000:1a:00.0; the function is dropped (torch gives none, a GPU is function 0)."""
    m = _PCI.fullmatch(text.strip())
    return (int(m[1], 16), int(m[2], 16), int(m[3], 16)) if m else None


def smi_index_by_address(query_text: str) -> dict[tuple[int, int, int], int]:
    """{PCI address: nvidia-smi index} from `nvidia-smi --query-gpu=index,pci.bus_id
    --format=csv,noheader`; lines that do not parse are skipped."""
    out = {}
    for line in query_text.splitlines():
        index, _, address = line.partition(",")
        parsed = pci_address(address)
        if index.strip().isdigit() and parsed is not None:
            out[parsed] = int(index)
    return out


def visible_index(ordinal: int, visible: str | None) -> int | None:
    """The fallback without a PCI address: CUDA ordinal i is the i-th entry of an integer
    CUDA_VISIBLE_DEVICES, or i when it is unset. Exact only where CUDA counts in nvidia-smi's
    (PCI) order, e.g. CUDA_DEVICE_ORDER=PCI_BUS_ID; UUID or MIG entries give None (unknown)."""
    if visible is None:
        return ordinal
    entries = [e.strip() for e in visible.split(",")]
    if ordinal >= len(entries) or not all(e.isdigit() for e in entries):
        return None
    return int(entries[ordinal])


def gpu_indices(ordinals: list[int]) -> list[int | None]:
    """nvidia-smi's index of each CUDA device ordinal, matched by PCI address: the two counts
    differ (CUDA puts the fastest GPU first, CUDA_VISIBLE_DEVICES renumbers)."""
    by_address = smi_index_by_address(smi("--query-gpu=index,pci.bus_id", "--format=csv,noheader") or "")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    pairs = [(ordinal, _pci_address_of(ordinal)) for ordinal in ordinals]
    return [visible_index(o, visible) if a is None else by_address.get(a) for o, a in pairs]


def _pci_address_of(ordinal: int) -> tuple[int, int, int] | None:
    try:
        props = torch.cuda.get_device_properties(ordinal)
        # in torch's CUDA builds (torch.numa reads them) though not in its type stubs
        return (props.pci_domain_id, props.pci_bus_id, props.pci_device_id)
    except (AttributeError, AssertionError, RuntimeError):  # no such field or device
        return None


def smi(*args: str) -> str | None:
    """nvidia-smi's output, or None when it is missing, fails or hangs: a header field is
    written as unknown rather than stop a measurement."""
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def title(model: TPModel, info: DistInfo) -> str:
    """What a measurement ran on, for titles: 'small (2 layers), tp 2 gloo on cpu, bfloat16', and
    the link where it is emulated: '..., tp 2 gloo on cpu over an emulated 1gbit link, ...'."""
    where = f"tp {info.world} {info.backend or 'single'} on {info.device.type}"
    if info.stands_for:
        where = f"tp {info.stands_for} stand-in (rank 0 alone) on {info.device.type}"
    where += f" over an emulated {info.link.spec} link" if info.link else ""
    return f"{model.spec.name} ({layers_text(model.spec.layers)}), {where}, {dtype_name(model)}"


def software() -> dict:
    """Versions that shaped a measurement; torch's local suffix (+cu121, +cpu) is kept: it names
    the CUDA build, which changes kernels and NCCL."""
    return {"isotune": __version__, "torch": str(torch.__version__)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"
