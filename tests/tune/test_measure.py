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
