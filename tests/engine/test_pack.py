"""Packed prompts (core.pack): several sequences in one prefill, each attending to itself alone
in its own cache slot. A pack's rows equal each prompt prefilled alone (the reference), and ISO
over the pack, with bounds that fall inside sequences, equals the unsplit pack, on real gloo ranks
at tp 2 with 2, 3 and 4 chunks."""

import dataclasses
import json

import pytest
import torch

from isotune.core.errors import BadInput
from isotune.core.pack import Piece, Seq, check_pack, chunk_pieces
from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.executor import prefill
from isotune.engine.model import POISON, build_model

LENGTHS = [40, 70, 50]  # packed: 160 rows; sequence 1 spans rows 40..109
SPLITS = {  # bounds over the packed stream; each cuts inside a sequence somewhere
    2: [0, 64, 160],
    3: [0, 48, 96, 160],
    4: [0, 32, 80, 128, 160],
}


def test_chunk_pieces_cut_the_packed_stream_into_each_sequences_rows():
    pack = [Seq(slot=2, start=0, tokens=40), Seq(slot=0, start=0, tokens=70), Seq(slot=1, start=9, tokens=50)]
    got = chunk_pieces(pack, [0, 64, 160])
    assert got == [
        (Piece(slot=2, start=0, offset=0, tokens=40), Piece(slot=0, start=0, offset=40, tokens=24)),
        (Piece(slot=0, start=24, offset=0, tokens=46), Piece(slot=1, start=9, offset=46, tokens=50)),
    ]
    assert sum(p.tokens for chunk in got for p in chunk) == 160
    with pytest.raises(ValueError):
        chunk_pieces(pack, [0, 64, 150])  # bounds that do not cover the pack


def test_a_pack_that_does_not_fit_its_slots_is_refused():
    with pytest.raises(BadInput, match="two sequences in one cache slot"):
        check_pack([Seq(slot=0, start=0, tokens=4), Seq(slot=0, start=0, tokens=4)], slots=2, max_len=8, tokens=8)
    with pytest.raises(BadInput, match="does not fit 2 slots of 8 positions"):
        check_pack([Seq(slot=1, start=5, tokens=4)], slots=2, max_len=8, tokens=4)
    with pytest.raises(BadInput, match="does not fit"):
        check_pack([Seq(slot=2, start=0, tokens=1)], slots=2, max_len=8, tokens=1)
    with pytest.raises(ValueError, match="the pack holds 4 tokens, the stream 5"):
        check_pack([Seq(slot=0, start=0, tokens=4)], slots=2, max_len=8, tokens=5)


def _pack(lengths: list[int]) -> list[Seq]:
    return [Seq(slot=i, start=0, tokens=n) for i, n in enumerate(lengths)]


def _worker(info, payload) -> int:
    """Every rank: each prompt alone, the unsplit pack, and the pack under each split; rank 0
    writes the largest differences of the final-normed rows and the last rows' logits."""
    spec = load_spec("tiny")
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, spec.vocab, (n,), generator=gen) for n in LENGTHS]
    ids = torch.cat(prompts)  # (160,)
    model = build_model(spec, info, torch.float32, max(LENGTHS), seed=1, slots=len(LENGTHS))
    alone = []
    for p in prompts:  # the reference: each prompt by itself, the unpacked path (slot 0)
        model.fill_cache(POISON)
        alone.append(model.final_norm(prefill(model, p, [0, len(p)])))  # (n, hidden)
    ref = torch.cat(alone)  # (160, hidden)
    pack = _pack(LENGTHS)
    model.fill_cache(POISON)  # no row of a pack may read what the prompts alone left
    whole = model.final_norm(prefill(model, ids, [0, len(ids)], pack=pack))  # (160, hidden)
    ends = torch.tensor(LENGTHS).cumsum(0) - 1  # each sequence's last row
    out = {"pack_vs_alone": (whole - ref).abs().max().item(), "splits": {}}
    for chunks, bounds in SPLITS.items():
        model.fill_cache(POISON)
        x = model.final_norm(prefill(model, ids, bounds, pack=pack))
        out["splits"][chunks] = {
            "hidden": (x - whole).abs().max().item(),
            "logits": (model.logits(x[ends]) - model.logits(whole[ends])).abs().max().item(),
        }
    if info.is_main:
        with open(payload, "w") as f:
            json.dump(out, f)
    return 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pack") / "tp2.json")
    assert dist.run_ranks(_worker, dist.Ranks(tp=2, device="cpu"), path) == 0
    with open(path) as f:
        return json.load(f)


def test_a_pack_computes_what_each_prompt_alone_computes(results):
    assert results["pack_vs_alone"] <= 1e-4


@pytest.mark.parametrize("chunks", sorted(SPLITS))
def test_iso_over_a_pack_equals_the_unsplit_pack(results, chunks):
    got = results["splits"][str(chunks)]
    assert got["hidden"] <= 1e-4 and got["logits"] <= 1e-4, got


def test_bench_times_a_length_as_a_pack_and_says_so(cli, tmp_path):
    out = tmp_path / "bench.json"
    r = cli("bench", "--model", "tiny", "--tp", "2", "--seq-lens", "256", "--pack", "64", "--repeats", "1",
            "--json", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    (rec,) = json.loads(out.read_text())
    assert rec["pack"] == 64 and rec["seq_len"] == 256 and rec["baseline_ms"] > 0 and rec["iso5050_ms"] > 0
    assert "packs of 64-token prompts" in " ".join(r.stdout.split())
    r = cli("bench", "--model", "tiny", "--seq-lens", "256", "--pack", "0")
    assert r.returncode == 2 and "--pack 0: give the tokens of each packed prompt" in r.stderr


def test_a_plan_searched_on_packs_records_what_it_was_searched_for(cli_here, tmp_path):
    from conftest import ROOT

    from isotune.core.plan import load_plan

    profile = ROOT / "profiles" / "samples" / "doctor-cpu" / "profile.yaml"
    out = tmp_path / "plan.yaml"
    r = cli_here("search", "--objective", "model", "--profile", str(profile), "--seq-lens", "512,2048",
                 "--pack", "256", "--trials", "8", "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    plan = load_plan(out)
    assert plan.study["pack"] == 256 and plan.study["name"].endswith("-pack256")
    # benched on single prompts, the plan's kind is said beside the numbers
    r = cli_here("bench", "--model", "small", "--layers", "2", "--tp", "2", "--seq-lens", "512", "--plan", str(out),
                 "--force", "--repeats", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "was searched on packs of 256-token prompts; this bench times single prompts" in r.stderr


def test_the_memory_check_counts_every_cache_slot(cli_here):
    """A pack's sequences each hold a KV cache slot: the need grows with them, and a pack that
    does not fit is refused before launch with the need per rank."""
    from isotune.core.memory import rank_need

    spec = load_spec("llama3-8b", 2)
    one, eight = rank_need(spec, 2, "bfloat16", 4096, 4096), rank_need(spec, 2, "bfloat16", 4096, 4096, slots=8)
    assert eight.kv_cache == 8 * one.kv_cache and eight.weights == one.weights
    r = cli_here("bench", "--model", "llama3-8b", "--layers", "2", "--tp", "2", "--seq-lens", "4194304",
                 "--pack", "4096")  # 1024 prompts of 4096 tokens: 1024 slots  # fmt: skip
    assert r.returncode == 2 and "KV cache" in r.stderr and "per rank" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ON = [("cpu", torch.float32, 1e-6), pytest.param("cuda", torch.bfloat16, 0.02, marks=[pytest.mark.cuda, CUDA])]


@pytest.mark.parametrize("device,dtype,tol", ON, ids=["cpu-fp32", "cuda-bf16"])
@pytest.mark.parametrize("mha", [False, True], ids=["gqa", "mha"])
@pytest.mark.parametrize("slots", [[0, 1, 2], [2, 0]], ids=["slots-in-order", "slots-gathered"])
def test_a_decode_step_of_several_sequences_is_each_one_decoded_alone(slots, mha, device, dtype, tol):
    """One token for each of several sequences at different positions, in one forward (one
    masked attention call over their slots: a view of the cache where the slots are 0..B-1 in
    order, gathered otherwise), equals each sequence's token decoded alone, at tp 1."""
    info = dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device(device), backend=None, launched=False)
    spec = load_spec("tiny")
    spec = dataclasses.replace(spec, kv_heads=spec.heads) if mha else spec
    gen = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, spec.vocab, (n,), generator=gen).to(device) for n in LENGTHS]
    nxt = torch.randint(0, spec.vocab, (len(LENGTHS),), generator=gen).to(device)  # each one's next token
    alone = build_model(spec, info, dtype, 128, seed=1)
    want = []
    for p, t in zip(prompts, nxt, strict=True):
        alone.fill_cache(POISON)
        prefill(alone, p, [0, len(p)])
        want.append(prefill(alone, t.view(1), [0, 1], start_pos=len(p)))  # (1, hidden)
    model = build_model(spec, info, dtype, 128, seed=1, slots=3)
    model.fill_cache(POISON)
    for slot in slots:  # prompt i in slot `slot`, prefilled alone into it
        i = slots.index(slot)
        prefill(model, prompts[i], [0, LENGTHS[i]], pack=[Seq(slot=slot, start=0, tokens=LENGTHS[i])])
    step = [Seq(slot=slot, start=LENGTHS[i], tokens=1) for i, slot in enumerate(slots)]
    got = prefill(model, nxt[: len(slots)], [0, len(slots)], pack=step)  # (B, hidden)
    assert model.packed_chunk(tuple(chunk_pieces(step, [0, len(slots)])[0])).one_token_each is not None
    ref = torch.cat(want[: len(slots)])  # (B, hidden)
    assert (got - ref).abs().max().item() <= tol * ref.abs().max().item()  # relative to the values' scale
