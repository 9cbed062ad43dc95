"""--compile: the fused elementwise steps give what the eager reference gives, for every split
and for one-token decode steps, and say what compiling cost."""

import dataclasses

import pytest
import torch
from torch._dynamo.utils import counters

from isotune.core.chunking import chunk_bounds
from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.decode import greedy_decode
from isotune.engine.executor import prefill
from isotune.engine.fused import EAGER
from isotune.engine.model import POISON, build_model, say_compiled

CPU = dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None, launched=False)


@pytest.mark.parametrize(
    "dtype,tol,qk_norm", [(torch.float32, 1e-4, False), (torch.bfloat16, 0.1, False), (torch.float32, 1e-4, True)]
)
def test_compiled_steps_match_eager_for_every_split_and_decode(dtype, tol, qk_norm, capsys):
    # qk_norm: Qwen3's per-head norm, the same compiled RMSNorm over (T, heads, head_dim)
    spec = dataclasses.replace(load_spec("small", layers=2), qk_norm=qk_norm)
    model = build_model(spec, CPU, dtype, 320, seed=0, compiled=True, decode=True)
    compiled_graphs = counters["stats"]["unique_graphs"]  # all compiled up front, in compile_s
    assert model.ops.compiled and model.compile_s > 0
    say_compiled(model, is_main=True)
    assert f"compiled RMSNorm, RoPE and SwiGLU in {model.compile_s:.1f} s" in capsys.readouterr().err
    ids = torch.randint(0, spec.vocab, (256,), generator=torch.Generator().manual_seed(1))
    compiled_ops = model.ops
    for ratios in ([1.0], [0.5, 0.5], [0.25, 0.75], [0.25] * 4):
        bounds = chunk_bounds(256, ratios, 16)
        model.ops = EAGER
        model.fill_cache(POISON)  # neither run may read the other's K/V
        want = prefill(model, ids, bounds).float()  # (256, hidden)
        model.ops = compiled_ops
        model.fill_cache(POISON)
        got = prefill(model, ids, bounds).float()
        assert (got - want).abs().max() < tol * max(1.0, want.abs().max().item() / 10)
    # decode runs one-token steps through the compiled steps too: the same greedy tokens
    tokens = {}
    for name, ops in (("eager", EAGER), ("compiled", compiled_ops)):
        model.ops = ops
        model.fill_cache(POISON)
        last = prefill(model, ids, [0, 256])[-1:]  # (1, hidden)
        tokens[name] = greedy_decode(model, last, 256, 8)
    # no split or decode step compiled anything more: compile_s said what compiling costs
    assert counters["stats"]["unique_graphs"] == compiled_graphs
    if dtype == torch.float32:
        assert tokens["compiled"] == tokens["eager"]
    else:  # bf16 rounding may flip a near-tie; the first tokens agree
        assert tokens["compiled"][:2] == tokens["eager"][:2]


def test_eager_is_the_default_and_says_nothing(capsys):
    model = build_model(load_spec("tiny"), CPU, torch.float32, 64, seed=0)
    say_compiled(model, is_main=True)
    assert model.ops is EAGER and model.compile_s is None and capsys.readouterr().err == ""
