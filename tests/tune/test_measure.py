"""The profiler's fits: the token bucket of a shaped link, found only where it explains the samples."""

import pytest

from isotune.tune.measure import fit_burst


def test_fit_burst_recovers_a_bucket_and_finds_none_on_a_plain_link():
    sizes = [0.25e6, 0.5e6, 1e6, 2e6, 4e6, 8e6]
    shaped = [[n, 0.1 + 2.0 * min(n / 1e6, 1.0) + 8.0 * max(0.0, n / 1e6 - 1.0)] for n in sizes]
    b, f = fit_burst(shaped, 0.1, 8.0)
    assert b == pytest.approx(1.0) and f == pytest.approx(2.0, rel=0.05)
    plain = [[n, 0.1 + 8.0 * n / 1e6] for n in sizes]
    assert fit_burst(plain, 0.1, 8.0) == (0.0, 0.0)


def test_calibrate_recovers_skew_and_comm_scale_from_whole_prefills():
    import dataclasses

    from isotune.core.cost import simulate
    from isotune.core.profile import CostFit, Profile
    from isotune.tune.in_context import calibrate

    prof = Profile(
        model={"name": "hand", "fingerprint": "x", "hidden": 1000, "layers": 4},
        topology={"tp": 2, "backend": "gloo", "device": "cpu", "interconnect": "x", "hosts": 1, "dtype": "float32"},
        software={},
        fit=CostFit(
            attn=[0, 0, 0], mlp=[0, 0], latency_ms=0.3, ms_per_mb=3.0,
            attn_table=[[256, 4.0], [2048, 40.0]], attn_ms_per_pair=1e-6, mlp_table=[[256, 6.0], [2048, 50.0]],
        ),
    )  # fmt: skip
    truth = dataclasses.replace(prof, fit=dataclasses.replace(prof.fit, sync_skew=0.08, comm_scale=1.3))
    measured = {
        s: {name: (b, simulate(truth, b, 4)) for name, b in (("baseline", [0, s]), ("iso5050", [0, s // 2, s]))}
        for s in (512, 1024, 2048)
    }
    skew, scale = calibrate(prof, measured, 4)
    assert skew == pytest.approx(0.08, abs=0.006) and scale == pytest.approx(1.3, abs=0.011)
