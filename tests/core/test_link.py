"""--link SPEC: an all-reduce's time on an emulated link, from the link model or the catalog,
held to formulas written out here rather than read back from the code."""

import pytest
import yaml

from isotune.core.analytic import catalog_links
from isotune.core.errors import BadInput
from isotune.core.hardware import CATALOG
from isotune.core.link import parse_link

CATALOG_LINKS = catalog_links()


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_a_model_link_is_latency_plus_the_rings_bytes_over_its_rate(tp):
    link = parse_link("25us,12GB/s", tp, CATALOG_LINKS)
    for nbytes in (1024, 2**20, 64 * 2**20):
        expected_s = 25e-6 + 2 * (tp - 1) / tp * nbytes / 12e9
        assert link.allreduce_ms(nbytes) == pytest.approx(expected_s * 1e3, rel=1e-12)
    one_gbit = parse_link("1gbit", tp, CATALOG_LINKS)  # a rate alone: bits per second, no latency
    assert one_gbit.allreduce_ms(2**20) == pytest.approx(2 * (tp - 1) / tp * 2**20 * 8 / 1e9 * 1e3, rel=1e-12)
    assert parse_link("0.5ms,500mbit", tp, CATALOG_LINKS).allreduce_ms(0) == pytest.approx(0.5)


def _entry(name: str, tp: int) -> dict:
    doc = yaml.safe_load((CATALOG / f"{name}.yaml").read_text())
    return next(a for a in doc["interconnect"]["allreduce"] if a["tp"] == tp)


def test_a_catalog_link_without_a_curve_is_its_latency_and_bus_bandwidth():
    a = _entry("a100-sxm", 4)
    assert "points" not in a
    link = parse_link("a100-sxm", 4, CATALOG_LINKS)
    nbytes = 16 * 2**20
    expected_s = a["latency_us"] * 1e-6 + 2 * 3 / 4 * nbytes / (a["busbw_gb_s"] * 1e9)
    assert link.allreduce_ms(nbytes) == pytest.approx(expected_s * 1e3, rel=1e-9)
    assert link.interconnect() == "emulated a100-sxm" and "catalog a100-sxm" in link.source


def test_a_catalog_link_with_a_curve_reads_it_by_message_size():
    """h100-sxm at tp 8 lists bus bandwidth by message size: at a listed size the time is that
    size's 2(n-1)/n · bytes / busbw."""
    points = sorted(_entry("h100-sxm", 8)["points"])
    link = parse_link("h100-sxm", 8, CATALOG_LINKS)
    for nbytes, busbw in points[-3:]:  # large messages, where the curve rises throughout
        assert link.allreduce_ms(nbytes) == pytest.approx(nbytes * 2 * 7 / 8 / (busbw * 1e9) * 1e3, rel=1e-9)
    small, large = link.allreduce_ms(points[0][0]), link.allreduce_ms(points[-1][0])
    assert 0 < small < large


@pytest.mark.parametrize(
    "spec,words",
    [
        ("nope", "is not in the catalog: use one of a100-sxm"),
        ("0gbit", "the rate must be more than 0"),
        ("0us,1gbit", "a latency given must be more than 0"),
        ("-1gbit", "does not parse"),
        ("1gbit,25us", "does not parse"),
        ("25us,1gbit,2", "does not parse"),
        ("12 parsecs", "does not parse"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_forms(spec, words):
    with pytest.raises(BadInput, match=words) as e:
        parse_link(spec, 2, CATALOG_LINKS)
    assert "\n" not in str(e.value)


def test_one_rank_has_no_all_reduce_to_hold():
    with pytest.raises(BadInput, match="tp 2 or more"):
        parse_link("1gbit", 1, CATALOG_LINKS)
