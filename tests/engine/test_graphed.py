"""The static-shape decode step behind --cuda-graphs: the same greedy tokens as the executor's
decode, on one rank and on two gloo ranks (the graph itself is CUDA-only: test_cuda_engine)."""

import dataclasses
import json

import torch

from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.decode import greedy_decode
from isotune.engine.executor import prefill
from isotune.engine.graphed import StaticDecoder
from isotune.engine.model import POISON, build_model


def _static_tokens(model, last, start: int, steps: int) -> list[int]:
    """greedy_decode's loop with StaticDecoder.step for the one-token forwards."""
    decoder = StaticDecoder(model)
    token = int(model.logits(model.final_norm(last)).argmax(-1)[-1])
    out = [token]
    for i in range(steps - 1):
        decoder.set(token, start + i)
        token = int(decoder.step().argmax(-1)[0])
        out.append(token)
    return out


def _both(info, spec, s: int, steps: int) -> tuple[list[int], list[int]]:
    model = build_model(spec, info, torch.float32, s + steps, seed=0)
    ids = torch.randint(0, spec.vocab, (s,), generator=torch.Generator().manual_seed(3))
    model.fill_cache(POISON)  # each decode must write its own rows, not find the other's
    want = greedy_decode(model, prefill(model, ids, [0, s])[-1:], s, steps)
    model.fill_cache(POISON)
    got = _static_tokens(model, prefill(model, ids, [0, s])[-1:], s, steps)
    return want, got


def test_static_steps_give_the_executors_tokens_on_one_rank():
    info = dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None, launched=False)
    # tiny and small group 2 query heads per K/V head; 8 over 2 makes groups of 4 (as llama3-8b)
    wide = dataclasses.replace(load_spec("tiny"), heads=8, kv_heads=2, hidden=256)
    qk = dataclasses.replace(load_spec("tiny"), qk_norm=True)  # Qwen3's per-head q/k norm
    for spec in (load_spec("tiny", layers=2), load_spec("small", layers=2), wide, qk):
        want, got = _both(info, spec, 120, 12)
        assert got == want and len(set(want)) > 1  # a real sequence, not one token repeated


def test_a_static_step_gives_the_executors_logits():
    """Greedy tokens can agree by chance on a small synthetic model; one step's logits cannot.
    With Qwen3's per-head q/k norm (its weights drawn away from one, as a trained model's are)
    and without it."""
    from isotune.core.schedule import build_schedule

    info = dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None, launched=False)
    for qk_norm in (False, True):
        spec = dataclasses.replace(load_spec("tiny"), qk_norm=qk_norm)
        model = build_model(spec, info, torch.float32, 80, seed=0)
        if qk_norm:
            gen = torch.Generator().manual_seed(5)
            for w in model.w.layers:  # (Hq + Hkv, D) each
                w.qk_norm.copy_(1 + 0.5 * torch.randn(w.qk_norm.shape, generator=gen))
        ids = torch.randint(0, spec.vocab, (64,), generator=torch.Generator().manual_seed(3))
        logits = []
        for static in (False, True):
            model.fill_cache(POISON)
            prefill(model, ids, [0, 64])
            if static:
                decoder = StaticDecoder(model)
                decoder.set(7, 64)
                logits.append(decoder.step())  # (1, vocab)
            else:
                h = prefill(
                    model, torch.tensor([7]), [0, 1], build_schedule(spec.layers, 1), start_pos=64
                )  # (1, hidden)
                logits.append(model.logits(model.final_norm(h)))
        assert (logits[1] - logits[0]).abs().max() < 1e-4, qk_norm


def _worker(info, path) -> int:
    want, got = _both(info, load_spec("small", layers=2), 96, 8)
    if info.is_main:
        with open(path, "w") as f:
            json.dump({"want": want, "got": got}, f)
    return 0


def test_static_steps_all_reduce_like_the_executor_on_two_ranks(tmp_path):
    path = tmp_path / "tokens.json"
    assert dist.run_ranks(_worker, dist.Ranks(tp=2), str(path)) == 0
    r = json.loads(path.read_text())
    assert r["got"] == r["want"]


def test_cuda_graphs_on_cpu_ranks_is_one_line(cli_here):
    r = cli_here("run", "--model", "tiny", "--cuda-graphs", "--device", "cpu")
    assert r.returncode == 2 and "--cuda-graphs" in r.stderr and "needs --device cuda" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
