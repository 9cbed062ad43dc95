"""The CUDA/NCCL path: the same code on GPUs. Marked `cuda`; skipped where no GPU is visible
(CI has none). Run on a GPU machine with `python3 -m pytest -q -m cuda`."""

import json

import pytest
import torch

from isotune.core.chunking import chunk_bounds
from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.attention import chunk_attention
from isotune.engine.executor import prefill
from isotune.engine.model import POISON, build_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _cuda_info(rank=0, world=1):
    return dist.DistInfo(
        rank=rank,
        world=world,
        local_rank=rank,
        device=torch.device("cuda", rank),
        backend=None if world == 1 else "nccl",
        launched=False,
    )


@pytest.mark.parametrize("start,end", [(0, 256), (64, 256), (192, 256), (255, 256)])
def test_cuda_chunk_attention_matches_the_cpu_kernel(start, end):
    torch.manual_seed(0)
    q = torch.randn(1, 8, end - start, 64)
    k, v = torch.randn(1, 2, 256, 64), torch.randn(1, 2, 256, 64)
    cpu = chunk_attention(q, k, v, start, end)
    gpu = chunk_attention(q.cuda(), k.cuda(), v.cuda(), start, end).cpu()
    assert (gpu - cpu).abs().max() < 1e-4


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.bfloat16, 0.25)])
def test_cuda_iso_equals_baseline(dtype, tol):
    spec = load_spec("small", layers=2)
    model = build_model(spec, _cuda_info(), dtype, 1024, seed=0)
    ids = torch.randint(0, spec.vocab, (1024,), device="cuda")
    model.fill_cache(POISON)  # before every prefill: no run may read another's K/V
    base = model.logits(model.final_norm(prefill(model, ids, [0, 1024])))
    for ratios in ([0.5, 0.5], [0.3, 0.7], [0.25] * 4):
        model.fill_cache(POISON)
        x = prefill(model, ids, chunk_bounds(1024, ratios, 64))
        assert (model.logits(model.final_norm(x)) - base).abs().max() < tol


def _nccl_worker(info, path) -> int:
    assert info.backend == "nccl" and info.device.type == "cuda"
    spec = load_spec("tiny")
    model = build_model(spec, info, torch.float32, 256, seed=0)
    ids = torch.randint(0, spec.vocab, (256,), generator=torch.Generator().manual_seed(0)).to(info.device)
    base = model.logits(model.final_norm(prefill(model, ids, [0, 256])))
    diff = (model.logits(model.final_norm(prefill(model, ids, [0, 128, 256]))) - base).abs().max().item()
    # a traced 2-chunk prefill long enough for real all-reduces: one of chunk 0's overlaps chunk 1's compute
    big = build_model(load_spec("small", layers=2), info, torch.bfloat16, 4096, seed=0)
    ids = torch.randint(0, big.spec.vocab, (4096,), generator=torch.Generator().manual_seed(0)).to(info.device)
    bounds = chunk_bounds(4096, [0.5, 0.5], 64)
    prefill(big, ids, bounds)  # warm-up
    events: list[dict] = []
    prefill(big, ids, bounds, trace=events)
    overlapped = any(
        c["kind"] == "comm" and c["chunk"] == 0 and e["kind"] == "compute" and e["chunk"] == 1
        and c["start_ms"] < e["end_ms"] and e["start_ms"] < c["end_ms"]
        for c in events
        for e in events
    )  # fmt: skip
    if info.is_main:
        with open(path, "w") as f:
            json.dump({"diff": diff, "overlapped": overlapped}, f)
    return 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_two_ranks(tmp_path):
    path = str(tmp_path / "r.json")
    assert dist.run_ranks(_nccl_worker, dist.Ranks(tp=2, device="cuda"), path) == 0
    with open(path) as f:
        r = json.load(f)
    assert r["diff"] < 1e-3 and r["overlapped"], r


def test_cuda_trace_events_come_from_cuda_events():
    """One rank on a GPU: every op gets an interval from CUDA events, in schedule order, inside the
    prefill's span (all-reduces are no-ops on one rank, so they have zero length)."""
    spec = load_spec("tiny")
    info = _cuda_info()
    model = build_model(spec, info, torch.float32, 256, 0)
    ids = torch.arange(256, device=info.device) % spec.vocab
    prefill(model, ids, chunk_bounds(256, [0.5, 0.5], 64))  # warm-up
    events: list[dict] = []
    prefill(model, ids, chunk_bounds(256, [0.5, 0.5], 64), trace=events)
    compute = [e for e in events if e["kind"] == "compute"]
    assert len(compute) == 2 * spec.layers * 2
    assert all(0 <= e["start_ms"] <= e["end_ms"] for e in events)
    assert all(a["end_ms"] <= b["start_ms"] + 1e-3 for a, b in zip(compute, compute[1:], strict=False))
