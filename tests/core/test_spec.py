import dataclasses
import json
from pathlib import Path

import pytest

from isotune.core.errors import BadInput
from isotune.core.shard import shard_for
from isotune.core.spec import load_spec, preset_names

REQUIRED = {
    "tiny",
    "small",
    "llama2-7b",
    "llama2-13b",
    "llama2-70b",
    "llama-30b",
    "llama3-8b",
    "llama3-70b",
    "mistral-7b",
    "qwen2.5-7b",
    "qwen2.5-32b",
    "qwen2.5-72b",
    "qwen3-8b",
    "qwen3-32b",
}


def test_every_preset_loads_with_distinct_fingerprints():
    assert REQUIRED <= set(preset_names())
    specs = [load_spec(n) for n in preset_names()]
    assert len({s.fingerprint() for s in specs}) == len(specs)
    assert load_spec("llama2-70b").kv_heads == 8 and load_spec("qwen2.5-7b").qkv_bias
    qwen3 = load_spec("qwen3-8b")
    assert qwen3.qk_norm and not qwen3.qkv_bias and not load_spec("qwen2.5-7b").qk_norm
    small = load_spec("small")
    assert (small.hidden, small.heads, small.kv_heads, small.ffn) == (1024, 8, 4, 2816)


def test_layers_truncate_and_change_the_fingerprint():
    full, two = load_spec("llama3-8b"), load_spec("llama3-8b", layers=2)
    assert two.layers == 2 and two.fingerprint() != full.fingerprint()
    with pytest.raises(BadInput, match="out of range"):
        load_spec("tiny", layers=99)


def _write_config(tmp_path, **cfg):
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return str(tmp_path)


BASE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=100,
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
)


def test_hf_config_new_and_legacy_rope_fields(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    new = load_spec(
        _write_config(
            a,
            architectures=["LlamaForCausalLM"],
            **BASE,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 5e5,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        )
    )
    assert new.rope_theta == 5e5 and new.rope_scaling["rope_type"] == "llama3"
    assert new.head_dim == 16 and new.checkpoint == str(a.resolve())
    b = tmp_path / "b"
    b.mkdir()
    old = load_spec(
        _write_config(
            b,
            architectures=["Qwen2ForCausalLM"],
            **BASE,
            rope_theta=1e6,
            rope_scaling={"type": "linear", "factor": 2.0},
            tie_word_embeddings=True,
            sliding_window=4096,
            use_sliding_window=False,
        )
    )
    assert old.rope_theta == 1e6 and old.rope_scaling["type"] == "linear"
    assert old.qkv_bias and old.tied_embeddings and old.sliding_window is None


def test_plans_made_before_qk_norm_existed_keep_their_fingerprint():
    """Qwen3's qk_norm joined ModelSpec later: a model without it must keep the fingerprint its
    plans and profiles were written with, or every one of them would be refused."""
    from isotune.core.plan import load_plan

    samples = Path(__file__).resolve().parents[2] / "profiles" / "samples"
    plan = load_plan(samples / "plan-small-l2-tp2-bf16-cpu-gloo-shaped1gbit.yaml")  # searched before qk_norm
    assert plan.model["fingerprint"] == load_spec("small", layers=2).fingerprint()
    with_norm = dataclasses.replace(load_spec("small", layers=2), qk_norm=True)
    assert with_norm.fingerprint() != plan.model["fingerprint"]


def test_qwen3_configs(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    spec = load_spec(
        _write_config(
            a, architectures=["Qwen3ForCausalLM"], **BASE, head_dim=32, sliding_window=4096, use_sliding_window=False
        )
    )
    assert spec.qk_norm and not spec.qkv_bias and spec.head_dim == 32 and spec.sliding_window is None
    c = tmp_path / "c"
    c.mkdir()  # no head_dim: Qwen3Config's own default (128), not hidden / heads as for Llama
    assert load_spec(_write_config(c, architectures=["Qwen3ForCausalLM"], **BASE)).head_dim == 128
    b = tmp_path / "b"
    b.mkdir()
    with pytest.raises(BadInput, match="biases on o_proj/MLP are not supported"):  # Qwen3 puts them on o_proj too
        load_spec(_write_config(b, architectures=["Qwen3ForCausalLM"], **BASE, attention_bias=True))


def test_unsupported_architecture_and_missing_folder(tmp_path):
    with pytest.raises(BadInput, match="not supported"):
        load_spec(_write_config(tmp_path, architectures=["GPT2LMHeadModel"], **BASE))
    with pytest.raises(BadInput, match="does not exist"):
        load_spec(str(tmp_path / "nope"))


def test_shards_cover_heads_and_replicate_kv_like_vllm():
    spec = load_spec("tiny")  # 4 query heads, 2 KV heads
    two = [shard_for(spec, 2, r) for r in range(2)]
    assert [(s.q_head_start, s.q_heads, s.kv_head_start, s.kv_heads) for s in two] == [(0, 2, 0, 1), (2, 2, 1, 1)]
    four = [shard_for(spec, 4, r) for r in range(4)]
    assert [s.kv_head_start for s in four] == [0, 0, 1, 1] and all(s.kv_heads == 1 for s in four)
    with pytest.raises(BadInput, match="does not divide"):
        shard_for(spec, 3, 0)
