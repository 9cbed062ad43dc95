"""Synthetic weights are drawn per shard (a rank never makes the full tensor), yet every TP size
sees the same model; and a rank that loads slowly does not time its peers out."""

import time

import pytest
import torch

from isotune.core.shard import shard_for
from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.weights import SyntheticSource, load_weights


class SmallBlocks(SyntheticSource):
    BASE = 1000  # many blocks even in a small tensor, so slices cut through them


@pytest.mark.parametrize("name", ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"])
def test_any_slice_equals_the_same_part_of_the_whole(name):
    src, shape = SmallBlocks(seed=3, dtype=torch.float32), (96, 70)
    column = name.endswith("down_proj.weight")
    whole = src.get(name, shape, cols=slice(0, 70)) if column else src.get(name, shape)
    for lo, hi in [(0, 7), (5, 40), (13, 14), (30, 70 if column else 96)]:
        if column:
            assert torch.equal(src.get(name, shape, cols=slice(lo, hi)), whole[:, lo:hi])
        else:
            assert torch.equal(src.get(name, shape, rows=slice(lo, hi)), whole[lo:hi])
    assert whole.std() > 0 and abs(whole.mean()) < 0.2 * whole.std()  # random, centred
    assert not torch.equal(whole[:10], whole[10:20])  # blocks differ


def test_bias_slices_and_other_seeds():
    a, b = SmallBlocks(seed=1), SmallBlocks(seed=2)
    bias = a.get("model.layers.0.self_attn.q_proj.bias", (2500,))
    assert torch.equal(a.get("model.layers.0.self_attn.q_proj.bias", (2500,), rows=slice(900, 2100)), bias[900:2100])
    assert not torch.equal(b.get("model.layers.0.self_attn.q_proj.bias", (2500,)), bias)


def test_every_tp_size_sees_the_same_model():
    """tp 2's shards of the preset `small` put back together are tp 1's weights, bit for bit."""
    spec = load_spec("small").with_layers(1)
    one = load_weights(spec, shard_for(spec, 1, 0), torch.float32, "cpu", seed=5)
    two = [load_weights(spec, shard_for(spec, 2, r), torch.float32, "cpu", seed=5) for r in range(2)]
    l1, l2 = one.layers[0], [w.layers[0] for w in two]
    assert torch.equal(torch.cat([w.w_down for w in l2], dim=1), l1.w_down)
    assert torch.equal(torch.cat([w.wo for w in l2], dim=1), l1.wo)
    half = spec.ffn // 2  # gate/up are fused per rank as [gate shard; up shard]
    gate = torch.cat([w.w_gate_up[:half] for w in l2])
    assert torch.equal(gate, l1.w_gate_up[: spec.ffn])
    assert torch.equal(two[1].embed, one.embed)


def test_a_shard_is_drawn_without_the_full_tensor(monkeypatch):
    """A quarter of llama3-70b's down projection (8192 x 28672, 0.9 GB in float32, the full
    tensor) costs one base vector of random numbers, and comes in the target dtype."""
    drawn = []
    real = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, **k: drawn.append(a[0]) or real(*a, **k))
    src = SyntheticSource(seed=0, dtype=torch.bfloat16)
    part = src.get("model.layers.0.mlp.down_proj.weight", (8192, 28672), cols=slice(0, 7168))
    assert part.shape == (8192, 7168) and part.dtype == torch.bfloat16
    assert drawn == [SyntheticSource.BASE]


def _slow_loader(info, pause_s):
    if info.rank == 1:
        time.sleep(pause_s)  # loading a big model: longer than a collective may wait
    t = torch.ones(3)
    dist.all_reduce_async(t).wait()
    assert t.tolist() == [2.0, 2.0, 2.0]
    return 0


def test_a_slow_loading_rank_does_not_time_out_its_peers(monkeypatch):
    monkeypatch.setattr(dist, "TIMEOUT_S", 2.0)  # spawned ranks re-import dist: pass it by env too
    monkeypatch.setenv("ISOTUNE_DIST_TIMEOUT", "2")
    assert (
        dist.run_ranks(_slow_loader, dist.Ranks(tp=2), 5.0) == 0
    )  # before: "DistStoreError: wait timeout after 2000ms"
