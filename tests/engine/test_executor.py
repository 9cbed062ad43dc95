"""ISO output == unsplit baseline on real gloo ranks, for many splits, TP sizes, GQA and MHA."""

import dataclasses
import json

import pytest
import torch

from isotune.core.chunking import chunk_bounds
from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.decode import greedy_decode
from isotune.engine.executor import prefill
from isotune.engine.model import POISON, build_model

SPLITS = [[1.0], [0.5, 0.5], [0.3, 0.7], [0.8, 0.2], [1 / 3] * 3, [0.5, 0.3, 0.2], [0.25] * 4, [0.1, 0.2, 0.3, 0.4]]
SEQ = 200


def _one(info, mha: bool, out: str) -> None:
    """Baseline vs each split of one model (GQA or MHA); rank 0 writes the max abs logit diffs."""
    spec = load_spec("tiny")
    if mha:
        spec = dataclasses.replace(spec, kv_heads=spec.heads)
    model = build_model(spec, info, torch.float32, SEQ + 4, seed=1)
    ids = torch.randint(0, spec.vocab, (SEQ,), generator=torch.Generator().manual_seed(3))
    model.fill_cache(POISON)  # before every prefill: a chunk must not read the last run's K/V
    base_x = prefill(model, ids, [0, SEQ])
    base = model.logits(model.final_norm(base_x))  # (S, vocab)
    base_tokens = greedy_decode(model, base_x[-1:], SEQ, 4)
    diffs, tokens_equal = {}, {}
    for ratios in SPLITS:
        bounds = chunk_bounds(SEQ, ratios, 16)
        model.fill_cache(POISON)
        x = prefill(model, ids, bounds)
        diffs[str(bounds)] = (model.logits(model.final_norm(x)) - base).abs().max().item()
        tokens_equal[str(bounds)] = greedy_decode(model, x[-1:], SEQ, 4) == base_tokens
    if info.is_main:
        torch.save(base, out + ".pt")
        with open(out, "w") as f:
            json.dump({"diffs": diffs, "tokens_equal": tokens_equal}, f)


def _worker(info, payload) -> int:
    """Runs on every rank: both models at this TP size, in one launch (a launch costs seconds)."""
    for mha in (False, True):
        _one(info, mha, payload.format(mha=mha))
    return 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = {}
    tmp = tmp_path_factory.mktemp("iso")
    for tp in (1, 2, 4):
        path = str(tmp / f"tp{tp}_{{mha}}.json")
        assert dist.run_ranks(_worker, dist.Ranks(tp=tp, device="cpu"), path) == 0
        for mha in (False, True):
            with open(path.format(mha=mha)) as f:
                out[(tp, mha)] = json.load(f) | {"logits": torch.load(path.format(mha=mha) + ".pt")}
    return out


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("mha", [False, True], ids=["gqa", "mha"])
def test_iso_equals_baseline(results, tp, mha):
    r = results[(tp, mha)]
    assert len(r["diffs"]) == len(SPLITS)
    for bounds, diff in r["diffs"].items():
        assert diff <= 1e-4, f"split {bounds}: max abs logit diff {diff}"
        assert r["tokens_equal"][bounds], f"split {bounds}: decode after ISO prefill diverged"


@pytest.mark.parametrize("mha", [False, True], ids=["gqa", "mha"])
def test_sharded_model_equals_unsharded(results, mha):
    """Synthetic weights do not depend on TP, so every TP size computes the same function."""
    ref = results[(1, mha)]["logits"]
    for tp in (2, 4):
        assert (results[(tp, mha)]["logits"] - ref).abs().max() <= 1e-4
    assert (results[(1, False)]["logits"] - results[(1, True)]["logits"]).abs().max() > 1e-3  # MHA differs


def test_decode_continues_from_the_cache():
    """One-token forwards over the cache give the same logits as a full prefill of the sequence."""
    info = dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None, launched=False)
    spec = load_spec("tiny")
    model = build_model(spec, info, torch.float32, 64, seed=0)
    ids = torch.randint(0, spec.vocab, (40,), generator=torch.Generator().manual_seed(0))
    full = model.logits(model.final_norm(prefill(model, ids, [0, 40])))
    model.fill_cache(POISON)  # each step must write its own K/V row, not find the full prefill's
    prefill(model, ids[:32], [0, 16, 32])
    for pos in range(32, 40):
        step = model.logits(model.final_norm(prefill(model, ids[pos : pos + 1], [0, 1], start_pos=pos)))
        assert (step[0] - full[pos]).abs().max() < 1e-4
