"""The GPU link's hold kernel (engine.comm_hold) and the GPU stand-in it serves. Marked `cuda`;
skipped where no GPU is visible (CI has none). Run on a GPU machine with
`python3 -m pytest -q -m cuda`. What this machine can check without a GPU (the refusals) is in
test_link_hold.py."""

import json
import time

import pytest
import torch

from isotune.core.analytic import catalog_links
from isotune.core.chunking import chunk_bounds
from isotune.core.link import parse_link
from isotune.core.spec import load_spec
from isotune.engine import comm_hold, dist
from isotune.engine.executor import COMPUTE_ONLY, prefill
from isotune.engine.link import GpuLink
from isotune.engine.model import POISON, build_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _held_ms(ns: int, ctas: int, times: int = 1) -> float:
    """GPU time of `times` holds queued back to back, by CUDA events. A 1 ms hold queued first
    keeps the stream busy while the host launches the timed ones, so the events time the
    kernels, not the host's launch between them."""
    stream = torch.cuda.Stream()
    comm_hold.hold(1000, ctas, stream)  # compiled before the timed ones
    stream.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    comm_hold.hold(1_000_000, ctas, stream)
    a.record(stream)
    for _ in range(times):
        comm_hold.hold(ns, ctas, stream)
    b.record(stream)
    b.synchronize()
    return a.elapsed_time(b)


def test_the_kernel_is_there():
    assert comm_hold.unavailable() is None


@pytest.mark.parametrize("us", [20, 100, 500, 2000])
@pytest.mark.parametrize("ctas", [8, 32])
def test_a_hold_lasts_the_asked_time(us, ctas):
    """Within 5% or 5 us of the asked time (the launch's own microseconds included)."""
    got = sorted(_held_ms(us * 1000, ctas) * 1e3 for _ in range(5))[2]  # the middle of 5, us
    assert abs(got - us) <= max(5.0, 0.05 * us), (us, ctas, got)


def test_holds_on_one_stream_queue_as_transfers_on_one_link():
    got = _held_ms(200_000, 16, times=5) * 1e3  # us
    assert abs(got - 1000) <= 50, got


def _prefills(info, out: str) -> int:
    """A GPU stand-in for tp 2 (rank 0's shard): its prefill with the link held equals the
    same prefill compute-only, split or not: the hold delays, it changes no value."""
    spec = load_spec("tiny")
    model = build_model(spec, info, torch.float32, 256, seed=1, tp=2)
    ids = torch.randint(0, spec.vocab, (256,), generator=torch.Generator().manual_seed(2)).cuda()
    got = {}
    for name, bounds in (("unsplit", [0, 256]), ("split", chunk_bounds(256, [0.5, 0.5], 16))):
        model.fill_cache(POISON)
        x = prefill(model, ids, bounds)  # (256, hidden)
        model.fill_cache(POISON)
        y = prefill(model, ids, bounds, mode=COMPUTE_ONLY)
        got[name] = (x - y).abs().max().item()
    with open(out, "w") as f:
        json.dump(got, f)
    return 0


def test_a_gpu_stand_in_computes_what_it_computes_without_the_link(tmp_path):
    out = tmp_path / "out.json"
    ranks = dist.Ranks(tp=1, device="cuda", link=parse_link("h100-sxm", 2, catalog_links()), stands_for=2)
    assert dist.run_ranks(_prefills, ranks, str(out)) == 0
    got = json.loads(out.read_text())
    assert got["unsplit"] == 0.0 and got["split"] == 0.0, got


def test_a_gpu_link_makes_the_compute_stream_wait_for_the_delivery():
    """The compute stream waits on the hold and the host does not: an event recorded after the
    wait comes the link's time (about 1.07 ms for 1 MiB at 25 us + 1 GB/s) after one before it,
    while the host passes the wait at once."""
    link = GpuLink(parse_link("25us,1GB/s", 2, catalog_links()), torch.device("cuda"), 16)
    t = torch.ones(256 * 1024, device="cuda")  # 1 MiB of fp32
    nbytes = t.numel() * t.element_size()
    torch.cuda._sleep(50_000_000)  # the compute stream busy while the host issues what follows
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    host = time.perf_counter()
    link.hold(None, nbytes).wait()
    host = time.perf_counter() - host
    b.record()
    b.synchronize()
    want_ms = link.link.allreduce_ms(nbytes)
    assert abs(a.elapsed_time(b) - want_ms) <= 0.05 * want_ms + 0.01, (a.elapsed_time(b), want_ms)
    assert host * 1e3 < want_ms / 2, host  # the host queued the wait; it did not sit through it
