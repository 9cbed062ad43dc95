"""Cost curves through in-context samples: interpolation, tables, the attention fit, and the
rank skew that a split can hide."""

import pytest

from isotune.core.chunking import chunk_bounds
from isotune.core.cost import simulate
from isotune.core.fit import fit_attention, interp, table_of
from isotune.core.profile import CostFit, Profile


def test_interp_follows_the_points_and_extends_the_end_segments():
    t = [[100, 10.0], [200, 20.0], [400, 60.0]]  # a cache cliff after 200 tokens
    assert interp(t, 100) == 10.0 and interp(t, 150) == 15.0 and interp(t, 300) == 40.0
    assert interp(t, 600) == 100.0  # the last slope carries on
    assert interp(t, 50) == 5.0 and interp(t, 0) == 0.0  # and the first, never below 0
    assert interp([[64, 3.0]], 128) == 6.0  # one point: proportional


def test_table_of_takes_the_typical_per_shape():
    table = table_of([(2, 5.0), (1, 1.0), (2, 7.0), (2, 6.0), (2, 100.0), (2, 6.0)])
    assert table == [[1, 1.0], [2, pytest.approx((6.0 + 6.0 + 7.0) / 3)]]  # 5 and 100 trimmed


def test_fit_attention_recovers_own_costs_and_the_prefix_rate():
    own = {64: 1.0, 128: 2.5, 256: 7.0}
    rate = 2e-5
    samples = [(q, p, own[q] + rate * q * p) for q in own for p in (0, 64, 512, 1024)]
    table, per_pair = fit_attention(samples)
    assert table == [[64, 1.0], [128, 2.5], [256, 7.0]] and per_pair == pytest.approx(rate)
    with pytest.raises(ValueError):
        fit_attention([(64, 64, 1.0)])


def _profile(skew: float) -> Profile:
    return Profile(
        model={"name": "hand", "fingerprint": "x", "hidden": 1000, "layers": 4},
        topology={"tp": 2, "backend": "gloo", "device": "cpu", "interconnect": "loopback", "hosts": 1, "dtype": "float32"},
        software={},
        fit=CostFit(
            attn=[0, 0, 0], mlp=[0, 0], latency_ms=0.5, ms_per_mb=2.0, sync_skew=skew,
            attn_table=[[64, 1.0], [1024, 20.0]], mlp_table=[[64, 2.0], [1024, 32.0]],
        ),
    )  # fmt: skip


def test_tables_drive_the_simulation_and_skew_is_hidden_by_a_split():
    serial, skewed = _profile(0.0), _profile(0.1)
    base, half = [0, 1024], chunk_bounds(1024, [0.5, 0.5], 16)
    compute = 4 * (20.0 + 32.0)
    # unsplit, every all-reduce waits for the slower rank: the skew adds its share of all compute
    assert simulate(skewed, base) == pytest.approx(simulate(serial, base) + 0.1 * compute)
    # split, the lag of chunk 0's all-reduce runs under chunk 1's compute: it costs less
    assert simulate(skewed, half) - simulate(serial, half) < 0.1 * compute * 0.75
