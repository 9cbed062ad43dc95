"""isotune vs Hugging Face transformers (the reference Llama/Qwen2/Qwen3/Mistral) on tiny checkpoints
that transformers itself wrote: same logits, same greedy tokens, with an ISO split at tp 2."""

import json

import pytest
import torch

from isotune.core.spec import load_spec
from isotune.engine import dist
from isotune.engine.executor import prefill
from isotune.engine.model import POISON, build_model

transformers = pytest.importorskip("transformers")  # a declared test dependency; see pyproject

SHAPE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=256,
    max_position_embeddings=512,
    initializer_range=0.2,
    rms_norm_eps=1e-6,
)
PROMPT_LEN, NEW = 96, 8

CASES = {
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", {}, {}),
    "llama3-rope-sharded": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        },
        {"max_shard_size": "40KB"},
    ),
    "llama-linear-rope-mha": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {"num_key_value_heads": 4, "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}},
        {},
    ),
    "qwen2-bias-tied": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": True}, {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 4096}, {}),
    # heads twice as wide as hidden / heads: q and o are not square
    "qwen3-qknorm-tied": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 32, "tie_word_embeddings": True}, {}),
}


def _reference(case, folder):
    cfg_name, model_name, extra, save_kw = CASES[case]
    torch.manual_seed(list(CASES).index(case))  # a different random model per case
    cfg = getattr(transformers, cfg_name)(**(SHAPE | extra))
    model = getattr(transformers, model_name)._from_config(cfg, attn_implementation="eager").eval()
    if "bias" in case:  # random init leaves biases at zero; make them matter
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    if "qknorm" in case:  # init leaves the per-head q/k norm weights at one; make them matter
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_norm.weight.normal_(1, 0.5)
                layer.self_attn.k_norm.weight.normal_(1, 0.5)
    model.save_pretrained(folder, **save_kw)
    ids = torch.randint(0, SHAPE["vocab_size"], (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids).logits[0]  # (S, vocab)
        seq = ids
        for _ in range(NEW):  # greedy, full recompute each step
            nxt = model(seq).logits[0, -1].argmax()
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    return ids[0], logits, seq[0, PROMPT_LEN:].tolist()


@pytest.fixture(scope="module", params=list(CASES))
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    ids, logits, tokens = _reference(request.param, folder)
    return request.param, folder, ids, logits, tokens


def test_logits_match_transformers(checkpoint):
    case, folder, ids, ref_logits, _ = checkpoint
    if case == "llama3-rope-sharded":
        assert (folder / "model.safetensors.index.json").is_file()
    spec = load_spec(str(folder))
    info = dist.DistInfo(rank=0, world=1, local_rank=0, device=torch.device("cpu"), backend=None, launched=False)
    model = build_model(spec, info, torch.float32, PROMPT_LEN, seed=0)
    for bounds in ([0, PROMPT_LEN], [0, 32, 64, PROMPT_LEN]):
        model.fill_cache(POISON)  # the split must not read the unsplit run's K/V
        logits = model.logits(model.final_norm(prefill(model, ids, bounds)))
        assert (logits - ref_logits).abs().max() <= 1e-4, f"{case} {bounds}"


def _tp_worker(info, payload) -> int:
    """This rank's shard of the checkpoint, an ISO prefill; rank 0 keeps the logits."""
    folder, ids, out = payload
    model = build_model(load_spec(folder), info, torch.float32, PROMPT_LEN, seed=0)
    model.fill_cache(POISON)
    logits = model.logits(model.final_norm(prefill(model, torch.tensor(ids), [0, 32, 64, PROMPT_LEN])))
    if info.is_main:
        torch.save(logits, out)
    return 0


def test_logits_match_transformers_at_tp_2(checkpoint, tmp_path):
    """Each rank reads its own heads' slices (and Qwen3's q/k norms for them): the all-reduced
    logits of an ISO split at tp 2 are transformers' within 1e-4, not just its greedy tokens."""
    case, folder, ids, ref_logits, _ = checkpoint
    out = tmp_path / "logits.pt"
    assert dist.run_ranks(_tp_worker, dist.Ranks(tp=2, device="cpu"), (str(folder), ids.tolist(), str(out))) == 0
    assert (torch.load(out) - ref_logits).abs().max() <= 1e-4, case


def test_iso_run_generates_transformers_greedy_tokens(checkpoint, tmp_path, cli):
    case, folder, ids, _, ref_tokens = checkpoint
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(" ".join(map(str, ids.tolist())))
    out = tmp_path / "run.json"
    r = cli(
        "run",
        "--model",
        str(folder),
        "--tp",
        "2",
        "--chunks",
        "3",
        "--ratios",
        "0.5,0.3,0.2",
        "--prompt-ids",
        str(prompt),
        "--max-new-tokens",
        str(NEW),
        "--compare",
        "--json",
        str(out),
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--dtype",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["chunk_tokens"] == [48, 32, 16]
    assert res["generated_ids"] == ref_tokens, case
    assert res["max_abs_diff"] <= 1e-4
