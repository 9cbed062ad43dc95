"""The hardware catalog and the analytic profile computed from it: every entry present, complete
and sourced; the profile's shape follows the hardware (PCIe spends more of a prefill on
all-reduces than NVLink, attention's share grows with length, short chunks are memory-bound)."""

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from isotune.core.analytic import analytic_profile
from isotune.core.cost import predict_serial, simulate
from isotune.core.errors import BadInput
from isotune.core.hardware import CATALOG, GPU_FIELDS, LINK_FIELDS, hardware_names, load_hardware
from isotune.core.profile import load_profile, save_profile
from isotune.core.spec import load_spec

GPUS = ("rtx4090", "l40s", "a100-sxm", "a800-sxm", "h100-sxm", "h200-sxm")


def test_the_catalog_has_every_named_gpu_complete_and_sourced():
    assert set(GPUS) <= set(hardware_names())
    for name in hardware_names():
        hw = load_hardware(name)  # raises on a missing field, a non-number or a missing source
        assert hw.name == name and hw.kind in ("nvlink", "pcie", "loopback", "network")
        assert all(len(v.source) > 20 for v in (*hw.gpu.values(), *hw.link.values()))
        assert {a.tp for a in hw.allreduce} >= ({1, 2} if hw.arch == "cpu" else {2, 4, 8}) - {1}
        assert all(len(a.source) > 20 for a in hw.allreduce)
    assert not load_hardware("rtx4090").p2p and load_hardware("h100-sxm").kind == "nvlink"


def _entry(**change) -> dict:
    d = yaml.safe_load((CATALOG / "h100-sxm.yaml").read_text())
    for path, value in change.items():
        *head, last = path.split(".")
        node = d
        for key in head:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return d


@pytest.mark.parametrize(
    "change,words",
    [
        ({"gpu.hbm_gb_s": {"value": 3350}}, "hbm_gb_s needs a numeric value and a source"),
        ({"gpu.sm_count": {"value": "many", "source": "x"}}, "sm_count needs a numeric value"),
        ({"gpu.bf16_dense_tflops": None}, "lacks 'bf16_dense_tflops'"),
        ({"interconnect.allreduce": []}, "needs at least one TP size"),
        ({"interconnect.allreduce": [{"tp": 2, "busbw_gb_s": 100, "latency_us": 9}]}, "each allreduce entry needs"),
        ({"isotune_hardware": 7}, "is not an isotune hardware entry"),
        (
            {
                "interconnect.allreduce": [
                    {"tp": 8, "busbw_gb_s": 400, "latency_us": 15, "source": "s", "points": [[1e6, 50]]}
                ]
            },
            "points must be .* at two sizes or more",
        ),
        ({"gpu.sm_count": {"value": 132, "source": "s", "points": [[16, "fast"], [64, 1]]}}, "points must be"),
        (  # a size twice: the curve read between its points would divide by zero there
            {"gpu.sm_count": {"value": 132, "source": "s", "points": [[16, 1], [64, 2], [64, 3]]}},
            "each size once",
        ),
    ],
)
def test_an_entry_without_a_field_or_its_source_is_refused(tmp_path, change, words):
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(_entry(**change)))
    with pytest.raises(BadInput, match=words):
        load_hardware(str(path))


def test_an_unknown_name_lists_the_catalog():
    with pytest.raises(BadInput, match="h100-sxm"):
        load_hardware("h900")


def test_fields_are_what_the_schema_names():
    assert set(load_hardware("h100-sxm").gpu) == set(GPU_FIELDS) and set(load_hardware("l40s").link) == set(LINK_FIELDS)


def _comm_share(hw: str, s: int) -> float:
    prof = analytic_profile(load_hardware(hw), load_spec("llama2-70b"), 4, "bfloat16")
    compute, comm = predict_serial(prof, s)
    return comm / (compute + comm)


def test_pcie_spends_more_of_a_prefill_on_all_reduces_than_nvlink():
    for s in (1024, 4096, 16384):
        pcie = min(_comm_share("rtx4090", s), _comm_share("l40s", s))
        assert pcie > 2 * max(_comm_share(hw, s) for hw in ("a100-sxm", "a800-sxm", "h100-sxm", "h200-sxm"))
        assert _comm_share("a800-sxm", s) > _comm_share("a100-sxm", s)  # a narrower NVLink


def test_attention_share_grows_with_length_and_short_chunks_are_memory_bound():
    prof = analytic_profile(load_hardware("h100-sxm"), load_spec("llama3-70b"), 8, "bfloat16")
    fit = prof.fit
    share = [fit.attn_ms(s, 0) / (fit.attn_ms(s, 0) + fit.mlp_ms(s)) for s in (1024, 4096, 16384, 65536)]
    assert share == sorted(share) and share[-1] > 2 * share[0]
    # below the weights' read time a chunk costs the same whatever its size: splitting it is pure loss
    assert fit.mlp_ms(16) == pytest.approx(fit.mlp_ms(64), rel=0.05)
    assert fit.mlp_ms(16) / 16 > 10 * fit.mlp_ms(8192) / 8192  # per token
    # what the profile says of itself, and what the cost model makes of it
    assert prof.source == "model" and prof.topology["hardware"] == "h100-sxm" and prof.assumptions
    base, half = simulate(prof, [0, 4096]), simulate(prof, [0, 2048, 4096])
    assert half < base  # NVLink, 70B, tp 8: a split pays


def test_float32_and_a_tp_that_does_not_fit_are_refused():
    with pytest.raises(BadInput, match="bfloat16 or float16"):
        analytic_profile(load_hardware("h100-sxm"), load_spec("llama3-8b"), 2, "float32")
    with pytest.raises(BadInput, match="does not divide"):
        analytic_profile(load_hardware("a800-sxm"), load_spec("llama-30b"), 8, "bfloat16")


def test_bus_bandwidth_measured_by_size_is_read_between_those_times(tmp_path):
    """A link that reaches its rate only for big messages: the all-reduce costs the times
    measured at 1-16 MB and reads between them, not the small- and large-message figures (nor
    a line through the points, which missed 1 MB by 39% on the cpu entry); the summary line
    still goes through them, and the table survives a save and load."""
    d = _entry()
    share = 2 * (8 - 1) / 8
    pts = [[mb * 1e6, bw] for mb, bw in ((1, 100.0), (4, 250.0), (16, 400.0))]
    d["interconnect"]["allreduce"] = [dict(d["interconnect"]["allreduce"][-1], points=pts)]
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(d))
    prof = analytic_profile(load_hardware(str(path)), load_spec("llama3-70b"), 8, "bfloat16")
    fit = prof.fit
    times = [nbytes / 1e6 * share / bw for nbytes, bw in pts]  # ms
    for (nbytes, _), ms in zip(pts, times, strict=True):
        assert fit.allreduce_ms(int(nbytes)) == pytest.approx(ms, rel=1e-9)
        assert fit.latency_ms + nbytes / 1e6 * fit.ms_per_mb == pytest.approx(ms, rel=0.25)  # the line
    assert fit.allreduce_ms(int(2.5e6)) == pytest.approx((times[0] + times[1]) / 2, rel=1e-9)  # halfway
    latency = d["interconnect"]["allreduce"][0]["latency_us"] / 1e3
    assert fit.allreduce_ms(32) == pytest.approx(latency, rel=1e-3)  # below the smallest size: toward the latency
    assert latency < fit.allreduce_ms(int(0.5e6)) < times[0]
    assert fit.latency_ms > 0 and any("measured at 3 message sizes" in line for line in prof.assumptions)
    save_profile(prof, tmp_path / "p.yaml")
    assert load_profile(tmp_path / "p.yaml").fit.allreduce_ms(int(2.5e6)) == fit.allreduce_ms(int(2.5e6))


def test_an_installed_package_carries_the_catalog():
    """The catalog is package data (isotune/catalog links to profiles/hardware), so a wheel, not
    only a checkout, has it: every entry is matched by pyproject's package-data globs."""
    pkg = Path(__import__("isotune").__file__).parent
    assert CATALOG.parent == pkg and CATALOG.is_dir()
    # the package-data line, read as text (tomllib is not in Python 3.10, which isotune supports)
    block = (pkg.parent / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1]
    globs = re.findall(r'"([^"]+)"', re.search(r"^isotune = \[(.*)\]", block, re.M).group(1))
    files = [f"catalog/{p.name}" for p in CATALOG.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files)


def test_no_catalog_all_reduce_gets_faster_with_size():
    """A measured point where a bigger message came out faster (the cpu entry's 4 MB vs 8 MB) is
    noise: read as it is, two half-size all-reduces would cost less than one, and a split would
    'save' communication. Every analytic profile's all-reduce is non-decreasing in size."""
    sizes = [int(x * 1e6) for x in (0.001, 0.1, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128)]
    for name in hardware_names():
        hw = load_hardware(name)
        for ar in hw.allreduce:
            fit = analytic_profile(hw, load_spec("small"), ar.tp, "bfloat16").fit
            times = [fit.allreduce_ms(n) for n in sizes]
            assert times == sorted(times), (name, ar.tp)
            assert all(2 * fit.allreduce_ms(n // 2) >= fit.allreduce_ms(n) for n in sizes[1:]), (name, ar.tp)
