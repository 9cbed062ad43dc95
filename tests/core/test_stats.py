"""The one timing statistic: a trimmed mean that drops the extremes and keeps the slow mode."""

import pytest

from isotune.core.stats import trimmed, typical, verdict


def test_small_samples_are_averaged_whole():
    assert typical([3.0]) == 3.0
    assert typical([1.0, 2.0, 6.0]) == 3.0


def test_one_outlier_at_either_end_is_dropped():
    assert typical([10.0, 10.0, 10.0, 10.0, 100.0]) == 10.0
    assert typical([1.0, 10.0, 10.0, 10.0, 10.0]) == 10.0
    assert trimmed([5.0, 1.0, 4.0, 2.0, 3.0]) == [2.0, 3.0, 4.0]
    assert len(trimmed(list(range(10)))) == 8  # one off each end, however many repeats


def test_a_bimodal_sample_keeps_its_slow_mode_unlike_the_median():
    # loopback all-reduces: mostly fast, often slow; a prefill pays the mean of both modes
    ts = [1.1, 1.2, 1.2, 1.3, 1.4, 1.5, 4.6, 4.8, 4.9, 4.9]
    median = (1.4 + 1.5) / 2
    assert typical(ts) == pytest.approx(sum(sorted(ts)[1:-1]) / 8)
    assert typical(ts) > 2.0 > median


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        typical([])


def test_a_change_reads_faster_slower_or_within_noise_by_its_whole_interval():
    assert verdict(-0.2, -0.01) == "faster" and verdict(0.01, 0.2) == "slower"
    assert verdict(-0.1, 0.1) == verdict(0.0, 0.1) == verdict(-0.1, 0.0) == "within noise"
