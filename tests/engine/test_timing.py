"""The two timing primitives beside the prefill protocol: back-to-back calls per call, and the
host's issue time of an op (the least of its tries)."""

import time

import torch

from isotune.engine.timing import device_ms, host_issue_ms, issue_and_run_ms

CPU = torch.device("cpu")


def test_device_ms_is_per_call_of_back_to_back_calls():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.005)

    ms = device_ms(fn, CPU, calls=4)
    assert len(calls) == 4 and 5.0 <= ms < 5.0 * 4  # per call, not the total


def test_host_issue_ms_keeps_the_least_of_its_tries():
    pauses = iter([0.2, 0.005, 0.15])  # a mean (120 ms) or a median (150) fails
    ms = host_issue_ms(lambda: time.sleep(next(pauses)), CPU, repeats=3)
    assert 5.0 <= ms < 60.0


def test_on_cpu_issuing_an_op_is_running_it():
    """No queue to hold on CPU: the host's time and the 'GPU' time are one measurement."""
    pauses = iter([0.2, 0.005, 0.15])  # a mean (120 ms) or a median (150) fails
    host, run = issue_and_run_ms(lambda: time.sleep(next(pauses)), CPU, repeats=3)
    assert host == run and 5.0 <= host < 60.0
