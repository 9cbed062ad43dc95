from isotune.core.schedule import ATTN, COMM, COMPUTE, MLP, build_schedule, final_comms


def test_one_chunk_is_the_serial_forward():
    ops = build_schedule(layers=3, chunks=1)
    assert [(o.kind, o.stage, o.layer) for o in ops] == [
        (k, s, layer) for layer in range(3) for s in (ATTN, MLP) for k in (COMPUTE, COMM)
    ]
    # each op depends on exactly the one before it
    assert all(o.deps == ((i - 1,) if i else ()) for i, o in enumerate(ops))


def test_deps_point_backwards_and_every_comm_lands_once():
    for layers in (1, 2, 5):
        for chunks in range(1, 9):
            ops = build_schedule(layers, chunks)
            assert len(ops) == 4 * layers * chunks
            assert all(d < i for i, o in enumerate(ops) for d in o.deps)
            consumers = {}
            for i, o in enumerate(ops):
                for d in o.deps:
                    if ops[d].kind == COMM:
                        assert ops[d].chunk == o.chunk  # a chunk only ever waits on its own reduction
                        consumers.setdefault(d, []).append(i)
            comms = [i for i, o in enumerate(ops) if o.kind == COMM]
            # every reduction is consumed exactly once: by the next stage, or at the very end
            assert sorted(list(consumers) + final_comms(ops)) == comms
            assert all(len(v) == 1 for v in consumers.values())


def test_wavefront_order_lets_the_next_chunk_compute_while_a_reduction_flies():
    ops = build_schedule(layers=2, chunks=2)
    names = [o.name for o in ops]
    assert names[:8] == [
        "attn L0 c0",
        "allreduce attn L0 c0",
        "attn L0 c1",
        "allreduce attn L0 c1",
        "mlp L0 c0",
        "allreduce mlp L0 c0",
        "mlp L0 c1",
        "allreduce mlp L0 c1",
    ]
    # layer 1's chunk 0 waits only on its own MLP reduction, not on chunk 1's
    attn10 = ops[names.index("attn L1 c0")]
    assert [ops[d].name for d in attn10.deps] == ["allreduce mlp L0 c0"]
    attn11 = ops[names.index("attn L1 c1")]
    assert sorted(ops[d].name for d in attn11.deps) == ["allreduce mlp L0 c1", "attn L1 c0"]
