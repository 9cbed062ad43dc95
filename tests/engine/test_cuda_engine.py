"""The GPU engine on one GPU with a real (1-rank) NCCL group: the wait path, the trace's
side-stream end event, the high-priority comm stream, grouped K/V heads read natively, compiled
steps and CUDA-event timing. Marked `cuda`; skipped where no GPU is visible (CI has none). Run on
a GPU machine with `python3 -m pytest -q -m cuda` (isotune doctor does)."""

import time

import pytest
import torch
import torch.distributed as tdist

from isotune.core.chunking import chunk_bounds
from isotune.core.shard import shard_for
from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.decode import greedy_decode
from isotune.engine.executor import prefill
from isotune.engine.fused import EAGER
from isotune.engine.group import init_group
from isotune.engine.model import POISON, build_model
from isotune.engine.timing import device_ms, issue_and_run_ms, kernels_issued, spin_cycles_per_ms
from isotune.engine.weights import load_weights

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _info(backend=None):
    return dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cuda", 0), backend=backend, launched=False)


@pytest.fixture
def nccl():
    """A 1-rank NCCL group made the way ranks make theirs (engine.group.init_group): all-reduces
    are real NCCL work on NCCL's own stream, with handles to wait on."""
    store = tdist.TCPStore("127.0.0.1", 0, None, True)
    info = _info("nccl")
    info.store_port = store.port
    init_group(info)
    yield info
    tdist.destroy_process_group()
    del store


def test_the_comm_stream_has_high_priority(nccl):
    backend = tdist.distributed_c10d._get_default_group()._get_backend(torch.device("cuda", 0))
    assert backend.options.is_high_priority_stream


def test_comm_ctas_caps_the_communicator():
    store = tdist.TCPStore("127.0.0.1", 0, None, True)
    info = _info("nccl")
    info.store_port, info.comm_ctas = store.port, 8
    init_group(info)
    try:
        backend = tdist.distributed_c10d._get_default_group()._get_backend(torch.device("cuda", 0))
        assert backend.options.config.max_ctas == 8
        t = torch.ones(1024, device="cuda")
        dist.all_reduce_async(t).wait()
        assert t.sum().item() == 1024
    finally:
        tdist.destroy_process_group()


def test_all_reduces_return_handles_that_are_waited(nccl):
    t = torch.ones(1024, device="cuda")
    handle = dist.all_reduce_async(t)
    assert handle is not None
    handle.wait()
    assert t.sum().item() == 1024  # one rank: the sum is itself


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 0.25)])
def test_iso_equals_baseline_through_nccl_waits(nccl, dtype, tol):
    spec = load_spec("small", layers=2)
    model = build_model(spec, nccl, dtype, 1024, seed=0)
    ids = torch.randint(0, spec.vocab, (1024,), device="cuda")
    model.fill_cache(POISON)  # before every prefill: no run may read another's K/V
    base = model.logits(model.final_norm(prefill(model, ids, [0, 1024])))
    for ratios in ([0.5, 0.5], [0.3, 0.7], [0.25] * 4):
        model.fill_cache(POISON)
        x = prefill(model, ids, chunk_bounds(1024, ratios, 64))
        assert (model.logits(model.final_norm(x)) - base).abs().max() < tol


def test_a_traced_two_chunk_run_orders_each_consumer_after_its_all_reduce(nccl):
    """Through real NCCL waits and the trace's side-stream end events: every all-reduce has an
    interval, and the op that reads its sum starts only after it ended, while chunk 1's attention
    was issued before chunk 0's MLP. (On one rank NCCL's all-reduce is nearly a no-op: measured
    on an H200, the first of each prefill lasted about 0.1 ms and ended before chunk 1's
    attention started. The next test gives it a link's wire time to show the overlap.)"""
    spec = load_spec("small", layers=2)
    model = build_model(spec, nccl, torch.bfloat16, 2048, seed=0)
    ids = torch.randint(0, spec.vocab, (2048,), device="cuda")
    bounds = chunk_bounds(2048, [0.5, 0.5], 64)
    prefill(model, ids, bounds)  # warm-up
    events: list[dict] = []
    prefill(model, ids, bounds, trace=events)
    comms = [e for e in events if e["kind"] == "comm"]
    assert len(comms) == 2 * spec.layers * 2 and all(e["end_ms"] > e["start_ms"] for e in comms)
    by = {(e["kind"], e["stage"], e["layer"], e["chunk"]): e for e in events}
    for layer in range(spec.layers):
        for c in (0, 1):
            reader = by["compute", "mlp", layer, c]  # lands the attention all-reduce of its chunk
            assert by["comm", "attn", layer, c]["end_ms"] <= reader["start_ms"] + 1e-3
        assert by["compute", "attn", layer, 1]["start_ms"] < by["compute", "mlp", layer, 0]["start_ms"]


def test_a_slow_link_all_reduce_overlaps_the_next_chunks_compute(nccl, monkeypatch):
    """Overlap on one GPU: each all-reduce is the real (1-rank) NCCL one, issued from a stream that
    first sleeps ~5 ms, the wire time a link between two GPUs would add. ISO issues chunk 1's
    attention without waiting for chunk 0's all-reduce, so it runs, and ends, while that sum is
    still in flight; an engine that waited (or put both on one stream) would start chunk 1 only
    after the sum landed."""
    cycles = int(5 * spin_cycles_per_ms(torch.device("cuda", 0)))  # ~5 ms
    link = torch.cuda.Stream()
    real = dist.all_reduce_async

    def slow_link(t):
        link.wait_stream(torch.cuda.current_stream())  # the partial sum is ready
        with torch.cuda.stream(link):
            torch.cuda._sleep(cycles)
            return real(t)  # NCCL's stream waits on `link`, so the sum starts after the sleep

    spec = load_spec("small", layers=2)
    model = build_model(spec, nccl, torch.bfloat16, 2048, seed=0)
    ids = torch.randint(0, spec.vocab, (2048,), device="cuda")
    bounds = chunk_bounds(2048, [0.5, 0.5], 64)
    base = prefill(model, ids, [0, 2048])
    prefill(model, ids, bounds)  # warm-up of the chunked shapes: the traced run issues at speed
    monkeypatch.setattr(dist, "all_reduce_async", slow_link)
    events: list[dict] = []
    model.fill_cache(POISON)  # the traced split must not read the unsplit run's K/V
    got = prefill(model, ids, bounds, trace=events)
    assert (got.float() - base.float()).abs().max() < 0.25  # the detour changes no sum
    by = {(e["kind"], e["stage"], e["layer"], e["chunk"]): e for e in events}
    comm, nxt = by["comm", "attn", 0, 0], by["compute", "attn", 0, 1]
    assert comm["end_ms"] - comm["start_ms"] > 1.5  # the sleep is in the comm lane
    # inside the sum's flight (both start events may land on one timer tick: nothing runs between)
    assert comm["start_ms"] <= nxt["start_ms"] + 1e-3 and nxt["end_ms"] < comm["end_ms"]
    # its reader waited (two streams wait on one NCCL event: their timestamps may differ by µs)
    assert by["compute", "mlp", 0, 0]["start_ms"] >= comm["end_ms"] - 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_synthetic_weights_drawn_on_the_gpu_are_the_cpu_ones(dtype):
    """A GPU rank copies its shard's blocks on the GPU (no host copy of the shard), from the same
    base vectors as a CPU rank: the same model on either device and at every TP size, bit for bit."""
    spec = load_spec("small").with_layers(1)
    cpu = load_weights(spec, shard_for(spec, 1, 0), dtype, "cpu", seed=5)
    one = load_weights(spec, shard_for(spec, 1, 0), dtype, torch.device("cuda", 0), seed=5)
    for name in ("attn_norm", "wqkv", "wo", "mlp_norm", "w_gate_up", "w_down"):  # every field of a layer
        got = getattr(one.layers[0], name)
        assert got.device.type == "cuda" and torch.equal(got.cpu(), getattr(cpu.layers[0], name)), name
    assert torch.equal(one.embed.cpu(), cpu.embed) and torch.equal(one.norm.cpu(), cpu.norm)
    two = [load_weights(spec, shard_for(spec, 2, r), dtype, torch.device("cuda", 0), seed=5) for r in range(2)]
    assert torch.equal(torch.cat([w.layers[0].wo for w in two], dim=1).cpu(), cpu.layers[0].wo)
    assert torch.equal(torch.cat([w.layers[0].w_down for w in two], dim=1).cpu(), cpu.layers[0].w_down)


def test_compiled_steps_match_eager_on_the_gpu():
    spec = load_spec("small", layers=2)
    model = build_model(spec, _info(), torch.bfloat16, 1024, seed=0, compiled=True, decode=True)
    ids = torch.randint(0, spec.vocab, (1024,), device="cuda")
    bounds = chunk_bounds(1024, [0.5, 0.5], 64)
    model.fill_cache(POISON)  # neither run may read the other's K/V
    got = prefill(model, ids, bounds).float()
    compiled, model.ops = model.ops, EAGER
    model.fill_cache(POISON)
    want = prefill(model, ids, bounds).float()
    assert compiled.compiled and (got - want).abs().max() < 0.1 * max(1.0, want.abs().max().item() / 10)


def test_event_timing_leaves_the_host_sync_out():
    x = torch.randn(64, 64, device="cuda")
    fn = lambda: x.add_(1.0)  # noqa: E731 - one tiny kernel: the launch and sync are most of its wall time
    device_ms(fn, x.device, 10)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) * 1e3
    assert 0 < device_ms(fn, x.device, 100) < wall


def test_a_held_stream_times_the_gpu_alone_where_the_host_sets_the_pace():
    """50 tiny kernels, each issued after ~50 µs of host work: the GPU waits on the host. Events
    around an unheld call time the host's pace; issue_and_run_ms holds the stream until all 50
    are queued, and its events time the kernels alone (a few µs each)."""
    x = torch.zeros(16, device="cuda")

    def fn():
        for _ in range(50):
            t = time.perf_counter()
            while time.perf_counter() - t < 5e-5:  # the host's work between launches
                pass
            x.add_(1.0)

    fn()
    torch.cuda.synchronize()
    unheld = device_ms(fn, x.device)
    host, gpu = issue_and_run_ms(fn, x.device)
    assert host > 2.0 and unheld > 0.8 * host  # the events saw the host's pace
    assert gpu is not None and 0 < gpu < 0.25 * host, (host, gpu)


def test_the_kernels_a_call_issues_are_counted_in_every_profiler_session():
    """Five sessions in one process (doctor opens several): later sessions must not drop kernel
    records (pytorch#192021 saw that on torch 2.10's Kineto)."""
    x = torch.zeros(64, device="cuda")
    counts = [kernels_issued(lambda: (x.add_(1.0), x.mul_(2.0), x.sub_(1.0)), x.device) for _ in range(5)]
    assert counts == [3] * 5


def _decode_both(info, s: int = 512, steps: int = 16) -> tuple[list[int], list[int]]:
    spec = load_spec("small", layers=2)
    # float32: the graphed step attends with SDPA's masked math kernel, eager decode with another
    # kernel; in bf16 their roundings could flip a near-tie argmax for good, in fp32 they agree
    model = build_model(spec, info, torch.float32, s + steps, seed=0)
    ids = torch.randint(0, spec.vocab, (s,), generator=torch.Generator().manual_seed(3)).to("cuda")
    model.fill_cache(POISON)  # each decode must write its own rows, not find the other's
    want = greedy_decode(model, prefill(model, ids, [0, s])[-1:], s, steps)
    model.fill_cache(POISON)
    got = greedy_decode(model, prefill(model, ids, [0, s])[-1:], s, steps, graphs=True)
    return want, got


def test_cuda_graph_decode_gives_the_eager_tokens(capsys):
    want, got = _decode_both(_info())
    assert got == want and "without a graph" not in capsys.readouterr().err  # captured, not fallen back


def test_cuda_graph_decode_captures_the_nccl_all_reduces(nccl, capsys):
    want, got = _decode_both(nccl)
    assert got == want and "without a graph" not in capsys.readouterr().err
