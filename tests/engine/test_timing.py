"""The two timing primitives beside the prefill protocol: back-to-back calls per call, and the
host's issue time of an op (the least of its tries). The clock they read is the test's: each
call of the timed function moves it by a cost the test chose, so the arithmetic is checked
exactly, whatever else the machine is doing."""

from types import SimpleNamespace

import pytest
import torch

from isotune.engine import timing
from isotune.engine.timing import device_ms, host_issue_ms, issue_and_run_ms

CPU = torch.device("cpu")


class _Clock:
    """time.perf_counter as timing reads it, in seconds; only `spend` moves it."""

    def __init__(self) -> None:
        self.now = 50.0

    def perf_counter(self) -> float:
        return self.now

    def spend(self, ms: float) -> None:
        self.now += ms / 1e3


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=c.perf_counter))
    return c


def test_device_ms_is_per_call_of_back_to_back_calls(clock):
    costs = iter([4.0, 6.0, 5.0, 9.0])  # 24 ms in all

    ms = device_ms(lambda: clock.spend(next(costs)), CPU, calls=4)
    assert ms == pytest.approx(6.0)  # 24 ms over 4 calls: not the total, nor the last call
    assert next(costs, None) is None  # called exactly 4 times


def test_host_issue_ms_keeps_the_least_of_its_tries(clock):
    costs = iter([200.0, 5.0, 150.0])  # a mean (118 ms) or a median (150) would say otherwise

    assert host_issue_ms(lambda: clock.spend(next(costs)), CPU, repeats=3) == pytest.approx(5.0)
    assert next(costs, None) is None


def test_host_issue_ms_times_the_call_alone(clock, monkeypatch):
    """The device sync before each try is outside the timed interval (on a GPU it waits for
    earlier work, which is not this op's issue time)."""
    monkeypatch.setattr(timing.dist, "synchronize", lambda device: clock.spend(1000.0))
    costs = iter([7.0, 3.0])
    assert host_issue_ms(lambda: clock.spend(next(costs)), CPU, repeats=2) == pytest.approx(3.0)


def test_on_cpu_issuing_an_op_is_running_it(clock):
    """No queue to hold on CPU: the host's time and the 'GPU' time are one measurement, the
    least of the tries."""
    costs = iter([200.0, 5.0, 150.0])
    host, run = issue_and_run_ms(lambda: clock.spend(next(costs)), CPU, repeats=3)
    assert host == run == pytest.approx(5.0)
    assert next(costs, None) is None  # one set of tries serves both
