"""The keep-or-stay-unsplit decision on paired, interleaved repeats."""

import pytest

from isotune.tune.search import decide


def test_decide_keeps_a_split_only_beyond_noise():
    base = [100.0, 101.0, 99.0, 100.5, 100.2, 99.8]
    assert decide(base, {"c0": [90.0, 91.0, 89.5, 90.2, 90.1, 90.3]}) == ("c0", pytest.approx(90.15))
    # 0.5% faster: inside the noise margin
    assert decide(base, {"c0": [x * 0.995 for x in base]})[0] is None
    # a faster median that loses most paired repeats is noise too
    assert decide(base, {"c0": [80.0, 120.0, 120.0, 80.0, 80.0, 120.0]})[0] is None
    assert decide(base, {}) == (None, pytest.approx(100.125))  # trimmed mean of the middle four
    picks = decide(base, {"c0": [95.0] * 6, "c1": [90.0] * 6})
    assert picks[0] == "c1"
