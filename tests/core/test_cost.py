"""The cost model on hand-made profiles, and the Profile YAML round trip."""

from itertools import pairwise

import pytest

from isotune.core.chunking import chunk_bounds
from isotune.core.cost import host_lane_text, predict_serial, simulate
from isotune.core.errors import BadInput
from isotune.core.profile import CostFit, Profile, load_profile, save_profile


def _profile(attn=(0.0, 0.01, 0.0), mlp=(0.0, 0.02), latency=0.0, ms_per_mb=0.0, slowdown=0.0, layers=4):
    return Profile(
        model={"name": "hand", "fingerprint": "x", "hidden": 1000, "layers": layers},
        topology={
            "tp": 2,
            "backend": "gloo",
            "device": "cpu",
            "device_count": 2,
            "interconnect": "loopback",
            "hosts": 1,
            "dtype": "float32",
        },
        software={"isotune": "test", "torch": "test"},
        fit=CostFit(attn=list(attn), mlp=list(mlp), latency_ms=latency, ms_per_mb=ms_per_mb, compute_slowdown=slowdown),
    )


def test_no_comm_means_serial_compute():
    p = _profile(attn=(0.1, 0.01, 1e-5), mlp=(0.05, 0.02))
    for ratios in ([1.0], [0.5, 0.5], [0.25] * 4):
        bounds = chunk_bounds(1024, ratios, 16)
        expect = 4 * sum(p.fit.attn_ms(b - a, a) + p.fit.mlp_ms(b - a) for a, b in pairwise(bounds))
        assert simulate(p, bounds) == pytest.approx(expect)


def test_unsplit_is_compute_plus_comm():
    p = _profile(latency=0.5, ms_per_mb=2.0)
    compute, comm = predict_serial(p, 1024)
    assert simulate(p, [0, 1024]) == pytest.approx(compute + comm)


def test_compute_much_larger_than_comm_hides_all_but_the_last_chunks_tail():
    # compute ~10 ms per op, one all-reduce of a 512-token chunk ~0.41 ms: hidden except the last
    p = _profile(attn=(0.0, 0.02, 0.0), mlp=(0.0, 0.02), latency=0.1, ms_per_mb=0.15)
    bounds = [0, 512, 1024]
    compute, _ = predict_serial(p, 1024)
    last_ar = p.fit.allreduce_ms(512 * 1000 * 4)
    assert simulate(p, bounds) == pytest.approx(compute + last_ar)


def test_overlap_bounded_by_physics_and_split_beats_serial_when_comm_is_big():
    p = _profile(attn=(0.05, 0.01, 2e-6), mlp=(0.05, 0.02), latency=0.2, ms_per_mb=3.0)
    compute, comm = predict_serial(p, 2048)
    serial = simulate(p, [0, 2048])
    split = simulate(p, chunk_bounds(2048, [0.5, 0.5], 16))
    assert max(compute, comm) <= split < serial


def test_slowdown_makes_overlap_cost_more():
    fast = _profile(latency=0.2, ms_per_mb=3.0)
    slow = _profile(latency=0.2, ms_per_mb=3.0, slowdown=0.5)
    bounds = chunk_bounds(2048, [0.5, 0.5], 16)
    assert simulate(slow, bounds) > simulate(fast, bounds)
    assert simulate(slow, [0, 2048]) == pytest.approx(simulate(fast, [0, 2048]))  # nothing overlaps


def test_profile_yaml_round_trip(tmp_path):
    p = _profile(latency=0.3, ms_per_mb=1.5, slowdown=0.1)
    p.attn_samples = [[64, 0, 0.5], [64, 64, 0.7]]
    p.allreduce_samples = [[1e6, 2.0]]
    path = tmp_path / "p.yaml"
    save_profile(p, path)
    q = load_profile(path)
    assert q == p and simulate(q, [0, 512, 1024]) == simulate(p, [0, 512, 1024])


@pytest.mark.parametrize(
    "text,needle",
    [
        ("a: [1, 2", "not valid YAML"),
        ("isotune_profile: 7\n", "not an isotune profile"),
        ("isotune_profile: 1\nmodel: {}\n", "malformed"),
    ],
)
def test_bad_profiles(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match=needle):
        load_profile(path)


def test_token_bucket_link_sends_fast_after_idle_and_at_rate_back_to_back():
    # 1000 tokens x hidden 1000 x fp32 = 4 MB per all-reduce; a 4 MB bucket sent at 1 ms/MB
    # refills in 40 ms at the link's 10 ms/MB, and each layer's compute (50 ms) is longer than that.
    plain = _profile(attn=(0.0, 0.025, 0.0), mlp=(0.0, 0.025), ms_per_mb=10.0, layers=2)
    bucket = _profile(attn=(0.0, 0.025, 0.0), mlp=(0.0, 0.025), ms_per_mb=10.0, layers=2)
    bucket.fit.burst_mb, bucket.fit.burst_ms_per_mb = 4.0, 1.0
    compute, comm = predict_serial(plain, 1000)
    assert simulate(plain, [0, 1000]) == pytest.approx(compute + comm)
    # attn, mlp 25 ms each: the idle gaps (25 ms) refill 2.5 MB of the 4 MB between all-reduces
    t = simulate(bucket, [0, 1000])
    first = 4.0 * 1.0  # full bucket
    later = 2.5 * 1.0 + 1.5 * 10.0  # 2.5 MB refilled, the rest at the link rate
    assert t == pytest.approx(compute + first + 3 * later)
    # a bucket never makes anything slower than the plain link
    for ratios in ([0.5, 0.5], [0.3, 0.3, 0.4]):
        bounds = chunk_bounds(1000, ratios, 10)
        assert simulate(bucket, bounds) <= simulate(plain, bounds) + 1e-9


def test_serial_prediction_costs_all_reduces_as_the_simulation_does():
    p = _profile(latency=0.2, ms_per_mb=3.0)
    p.fit.comm_scale = 1.4
    compute, comm = predict_serial(p, 1024)
    assert simulate(p, [0, 1024]) == pytest.approx(compute + comm)


def test_host_lane_sets_the_pace_where_launches_outlast_the_gpu():
    """GPU ops of 0.01 ms/token: at 1 ms of launches per op the host hides behind a 1024-token
    op (10.24 ms) but not behind 64-token chunks (0.64 ms), so 16 chunks take the host's 64 ms,
    and the line says below what size launches show."""
    p = _profile(attn=(0.0, 0.01, 0.0), mlp=(0.0, 0.01), layers=2)
    gpu = simulate(p, [0, 1024])
    p.fit.host_attn_ms = p.fit.host_mlp_ms = 1.0
    assert simulate(p, [0, 1024]) == pytest.approx(gpu)  # each 10 ms op hides its launches
    sixteen = chunk_bounds(1024, [1 / 16] * 16, 64)
    assert simulate(p, sixteen) == pytest.approx(2 * 16 * 2 * 1.0)  # the host: 64 ops of 1 ms
    assert predict_serial(p, 32)[0] == pytest.approx(2 * 2 * 1.0)
    p.fit.mlp_table = [[t, 0.01 * t] for t in (16, 32, 64, 128, 256)]
    p.fit.attn_table = [[t, 0.01 * t] for t in (16, 32, 64, 128, 256)]
    assert host_lane_text(p).endswith("chunks under 128 tokens wait on the host (launch-bound; try --compile)")
    p.fit.host_attn_ms = p.fit.host_mlp_ms = 0.0
    assert host_lane_text(p).startswith("none")


def test_the_host_lane_is_judged_against_the_gpus_own_time_where_the_profile_has_it(tmp_path):
    """Inside a prefill a host-bound op shows the host's pace, so in-context tables at or above
    the host's time say nothing about who leads; the GPU's own time (all kernels queued first)
    does. The line says which it was judged against, and the table survives a save and load."""
    p = _profile(layers=2)
    p.fit.host_attn_ms = p.fit.host_mlp_ms = 0.5  # 1 ms to issue a layer
    p.fit.mlp_table = [[t, 0.6] for t in (64, 128, 256, 512)]  # in context: the host's pace, and more
    p.fit.attn_table = [[t, 0.6] for t in (64, 128, 256, 512)]
    said = host_lane_text(p)
    assert "launches stay hidden" in said and "against in-context times" in said
    p.fit.gpu_layer_table = [[64, 0.2], [128, 0.3], [256, 0.6], [512, 1.1]]  # the GPU alone
    assert host_lane_text(p) == (
        "0.5 + 0.5 ms to issue a layer (attention + MLP): chunks under 512 tokens wait on the host "
        "(launch-bound; try --compile)"
    )
    save_profile(p, tmp_path / "p.yaml")
    assert load_profile(tmp_path / "p.yaml").fit.gpu_layer_table == p.fit.gpu_layer_table
    p.fit.gpu_layer_table = [[64, 0.1], [512, 0.9]]
    assert host_lane_text(p).endswith("launch-bound at every measured size (try --compile)")
    p.fit.gpu_layer_table = []  # measured on a GPU, but no size's own time could be separated
    assert host_lane_text(p).endswith("no verdict (the GPU's own time could not be separated at any size)")


def test_a_pack_costs_each_sequences_attention_over_its_own_prefix_only():
    """Eight 256-token prompts packed into 2048 tokens: the MLP and the all-reduces cost what one
    2048-token prompt's do, the attention only each sequence's own pairs (a bound inside a
    sequence makes its later part attend to its own earlier rows)."""
    from isotune.core.pack import chunk_pieces, packed

    p = _profile(attn=(0.1, 0.01, 1e-4), mlp=(0.05, 0.02))
    pack = packed(2048, 256)
    assert [s.tokens for s in pack] == [256] * 8 and packed(600, 256)[-1].tokens == 88
    for bounds in ([0, 2048], [0, 896, 2048], [0, 512, 1100, 2048]):
        pieces = chunk_pieces(pack, bounds)
        expect = 4 * sum(
            sum(p.fit.attn_ms(x.tokens, x.start) for x in chunk) + p.fit.mlp_ms(b - a)
            for chunk, (a, b) in zip(pieces, pairwise(bounds), strict=True)
        )
        assert simulate(p, bounds, pack=pack) == pytest.approx(expect)
        assert simulate(p, bounds, pack=pack) < simulate(p, bounds)  # fewer pairs than one long prompt
