"""The interconnect a plan records: the link among the group's own GPUs (not the host's), read
from canned `nvidia-smi` outputs; network across hosts; describe() and run_setting() agree."""

import platform
import stat
from pathlib import Path

import pytest
import torch

from isotune.core.setting import SETTING_KEYS
from isotune.core.spec import load_spec
from isotune.core.target import Target
from isotune.engine import dist, launcher, topology
from isotune.engine.rank import DistInfo
from isotune.engine.topology import (
    describe,
    group_link,
    link_between,
    pci_address,
    run_setting,
    smi_index_by_address,
    topo_cells,
    visible_index,
)

DATA = Path(__file__).parent / "data"
H100 = (DATA / "topo_h100_sxm_x8.txt").read_text()
RTX4090 = (DATA / "topo_rtx4090_x4.txt").read_text()
PAIRS = (DATA / "topo_nvlink_pairs_x4.txt").read_text()  # NV4 on 0-1 and 2-3, SYS between
# `nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader` on the PAIRS box
PAIRS_BUS_IDS = "0, 00000000:18:00.0\n1, 00000000:3B:00.0\n2, 00000000:86:00.0\n3, 00000000:AF:00.0\n"


@pytest.fixture(autouse=True)
def _local_run(monkeypatch):
    """A local run unless a test says otherwise: no launcher, all GPUs visible."""
    for var in (*launcher.LAUNCH_VARS, "LOCAL_WORLD_SIZE", "LOCAL_RANK", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("gpus", [list(range(8)), [0, 1], [2, 5], [7, 0, 3]])
def test_an_nvswitch_box_is_nvlink_for_any_group(gpus):
    assert link_between(H100, gpus) == "nvlink"


@pytest.mark.parametrize("gpus", [[0, 1], [2, 3], [0, 2], [0, 1, 2, 3]])
def test_a_pcie_box_with_nic_columns_is_pcie(gpus):
    assert link_between(RTX4090, gpus) == "pcie"


@pytest.mark.parametrize(
    "gpus,link",
    [([0, 1], "nvlink"), ([2, 3], "nvlink"), ([0, 2], "pcie"), ([1, 3], "pcie"), ([0, 1, 2, 3], "pcie")],
)
def test_nvlink_bridges_on_pairs_count_only_for_a_bridged_group(gpus, link):
    """The old rule (any NV# anywhere in the matrix) said nvlink for every group here."""
    assert link_between(PAIRS, gpus) == link


def test_the_matrix_is_read_cell_by_cell_without_nic_or_affinity_columns():
    cells = topo_cells(RTX4090)
    assert cells[("GPU2", "GPU3")] == "PHB" and cells[("GPU0", "GPU2")] == "SYS" and cells[("GPU1", "NIC0")] == "NODE"
    assert ("GPU0", "CPU") not in cells and not any(row.startswith(("Legend", "NIC Legend")) for row, _ in cells)
    assert topo_cells(H100)[("GPU6", "GPU7")] == "NV18" and len(topo_cells(H100)) == 12 * 12


def test_an_underlined_header_and_spaces_for_tabs_still_parse():
    text = "\x1b[4m" + PAIRS.replace("\t", "   ").replace("\n", "\x1b[0m\n", 1)
    assert link_between(text, [0, 1]) == "nvlink" and link_between(text, [1, 2]) == "pcie"


@pytest.mark.parametrize(
    "text,gpus",
    [
        ("", [0, 1]),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", [0, 1]),
        ("GPU0 NV18 garbage\nNV12 NV12 NV12\n", [0, 1]),  # NV tokens but no matrix
        (H100, [0, 8]),  # no GPU8 on this box
        (PAIRS.replace(" X \tNV4", " X \tN/A", 1), [0, 1]),  # GPU0's row: a cell that is no link
    ],
)
def test_what_cannot_be_read_is_unknown(text, gpus):
    assert link_between(text, gpus) == "unknown"


def test_one_gpu_has_no_link():
    assert link_between(H100, [3]) == "none" and group_link("cuda", True, [None]) == "none"


@pytest.mark.parametrize(
    "text,address",
    [
        ("00000000:1A:00.0", (0, 0x1A, 0)),
        ("0000:1a:00.0", (0, 0x1A, 0)),
        (" 00000001:AF:02.0 ", (1, 0xAF, 2)),
        ("1a:00.0", None),
        ("N/A", None),
    ],
)
def test_pci_addresses_compare_whatever_their_width_or_case(text, address):
    assert pci_address(text) == address


def test_nvidia_smi_indices_are_keyed_by_pci_address():
    text = PAIRS_BUS_IDS + "[Unknown Error]\n"
    assert smi_index_by_address(text) == {(0, 0x18, 0): 0, (0, 0x3B, 0): 1, (0, 0x86, 0): 2, (0, 0xAF, 0): 3}


@pytest.mark.parametrize(
    "ordinal,visible,index",
    [(1, None, 1), (1, "2,3", 3), (0, " 3 , 1", 3), (2, "2,3", None), (0, "GPU-5f1e2a3b-0000", None), (0, "", None)],
)
def test_without_a_pci_address_the_ordinal_goes_through_cuda_visible_devices(ordinal, visible, index):
    assert visible_index(ordinal, visible) == index


def _fake_cuda(monkeypatch, addresses: dict[int, tuple[int, int, int] | None]):
    """CUDA ordinal -> PCI address as torch would give it, and nvidia-smi answering for the PAIRS box."""
    monkeypatch.setattr(topology, "_pci_address_of", lambda ordinal: addresses.get(ordinal))
    answers = {("topo", "-m"): PAIRS, ("--query-gpu=index,pci.bus_id", "--format=csv,noheader"): PAIRS_BUS_IDS}
    monkeypatch.setattr(topology, "smi", lambda *args: answers[args])
    monkeypatch.setattr(topology, "device_name", lambda info: "NVIDIA RTX A6000")


def test_gpu_indices_follow_the_pci_address_not_the_cuda_ordinal(monkeypatch):
    # CUDA_VISIBLE_DEVICES=3,2 (or CUDA's fastest-first order) renumbers: ordinal 0 is smi 3
    _fake_cuda(monkeypatch, {0: (0, 0xAF, 0), 1: (0, 0x86, 0), 2: (0, 0x99, 0)})
    assert topology.gpu_indices([0, 1, 2]) == [3, 2, None]  # 99: not in nvidia-smi's list


def test_gpu_indices_fall_back_to_cuda_visible_devices(monkeypatch):
    _fake_cuda(monkeypatch, {})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    assert topology.gpu_indices([0, 1]) == [1, 2]


@pytest.mark.parametrize(
    "second,link",
    [((0, 0x3B, 0), "nvlink"), ((0, 0x86, 0), "pcie"), (None, "pcie")],  # None: ordinal 1 via CUDA_VISIBLE_DEVICES=0,2
)
def test_cuda_describe_and_run_setting_agree_on_the_groups_link(monkeypatch, second, link):
    _fake_cuda(monkeypatch, {0: (0, 0x18, 0), 1: second})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert run_setting(_target(2, "cuda", "bfloat16"))["interconnect"] == link
    # rank 1 of 2: its own GPU found by the code under test, rank 0's (smi 0) as gathered
    monkeypatch.setattr(dist, "gather_objects", lambda obj, info: [(platform.node(), 0), obj])
    info = DistInfo(rank=1, world=2, local_rank=1, device=torch.device("cuda", 1), backend="nccl", launched=False)
    assert describe(info, "bfloat16")[0]["interconnect"] == link


def test_gpus_on_two_hosts_are_network_whatever_their_links(monkeypatch):
    _fake_cuda(monkeypatch, {0: (0, 0x18, 0), 1: (0, 0x3B, 0)})
    monkeypatch.setattr(dist, "gather_objects", lambda obj, info: [obj, ("other-host", 1)])
    info = DistInfo(rank=0, world=2, local_rank=0, device=torch.device("cuda", 0), backend="nccl", launched=True)
    topo = describe(info, "bfloat16")[0]
    assert topo["interconnect"] == "network" and topo["hosts"] == 2
    assert group_link("cuda", False, [0, 1]) == "network" and group_link("cpu", False, [None, None]) == "network"


def test_a_gpu_group_with_an_unknown_index_or_no_nvidia_smi_is_unknown(monkeypatch):
    assert group_link("cuda", True, [0, None]) == "unknown"
    monkeypatch.setattr(topology, "smi", lambda *args: None)
    assert group_link("cuda", True, [0, 1]) == "unknown"


def _fake_smi(tmp_path, monkeypatch, script: str) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_nvidia_smi_is_run_and_read(tmp_path, monkeypatch):
    (tmp_path / "topo.txt").write_text(PAIRS)
    _fake_smi(tmp_path, monkeypatch, f'[ "$1" = topo ] && exec /bin/cat {tmp_path / "topo.txt"}\nexit 3\n')
    assert group_link("cuda", True, [2, 3]) == "nvlink" and group_link("cuda", True, [1, 2]) == "pcie"


@pytest.mark.parametrize("script", ["echo 'NVIDIA-SMI has failed'; exit 9\n", "exec /bin/sleep 5\n", None])
def test_a_failing_missing_or_hanging_nvidia_smi_gives_unknown(tmp_path, monkeypatch, script):
    monkeypatch.setattr(topology, "SMI_TIMEOUT_S", 0.3)
    if script is None:
        monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    else:
        _fake_smi(tmp_path, monkeypatch, script)
    assert topology.smi("topo", "-m") is None
    assert group_link("cuda", True, [0, 1]) == "unknown"


def _target(tp: int, device: str, dtype: str, compiled: bool = False) -> Target:
    return Target(spec=load_spec("tiny"), tp=tp, device=device, dtype=dtype, compile=compiled, max_len=64)


def _cpu_info(**kw) -> DistInfo:
    return DistInfo(
        rank=0, world=2, local_rank=0, device=torch.device("cpu"), backend="gloo", **{"launched": False, **kw}
    )


def test_cpu_ranks_on_one_host_are_loopback_launched_or_not(monkeypatch):
    assert run_setting(_target(2, "cpu", "float32"))["interconnect"] == "loopback"
    monkeypatch.setattr(dist, "gather_objects", lambda obj, info: [obj, obj])
    for launched in (False, True):
        topo = describe(_cpu_info(launched=launched), "float32")[0]
        assert topo["interconnect"] == "loopback" and topo["hosts"] == 1


def test_a_single_rank_describes_what_run_setting_predicts():
    info = DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None, launched=False)
    topo = describe(info, "float32")[0]
    assert {k: topo[k] for k in SETTING_KEYS} == run_setting(_target(1, "cpu", "float32"))
    compiled = describe(info, "float32", compiled=True)[0]
    assert {k: compiled[k] for k in SETTING_KEYS} == run_setting(_target(1, "cpu", "float32", compiled=True))


@pytest.mark.parametrize("local_world,link", [("2", "loopback"), ("1", "network"), (None, "network")])
def test_under_a_launcher_one_host_means_it_started_every_rank_here(monkeypatch, local_world, link):
    for var, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(var, value)
    if local_world is not None:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world)
    assert run_setting(_target(2, "cpu", "float32"))["interconnect"] == link
    # and what the ranks then find: the same host for both, or two
    hosts = [platform.node(), platform.node() if link == "loopback" else "other-host"]
    monkeypatch.setattr(dist, "gather_objects", lambda obj, info: [(h, None) for h in hosts])
    assert describe(_cpu_info(launched=True), "float32")[0]["interconnect"] == link


def test_namespace_ranks_share_a_host_name_but_not_a_link(monkeypatch):
    """benchmarks/netns.py runs each rank in its own network namespace (one host name, LOCAL_WORLD_SIZE=1,
    a tc-shaped veth between them): run_setting and describe both say network."""
    for var, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "10.213.7.1"), ("MASTER_PORT", "29500")):
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setattr(dist, "gather_objects", lambda obj, info: [(platform.node(), None)] * 2)
    assert run_setting(_target(2, "cpu", "float32"))["interconnect"] == "network"
    assert describe(_cpu_info(launched=True), "float32")[0]["interconnect"] == "network"


def test_plain_drops_the_colour_codes_some_drivers_put_in_topo_output():
    """An H200's driver underlined the matrix header; the report shows the matrix as text."""
    from isotune.engine.topology import plain

    header = "\t\x1b[4mGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m"
    assert plain(header) == "\tGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"
