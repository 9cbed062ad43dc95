"""`isotune models`: the built-in presets and their shapes, from the files the package carries."""

from __future__ import annotations

from isotune.core.spec import ModelSpec, load_spec, preset_names
from isotune.viz.tables import console, table


def params_b(spec: ModelSpec) -> float:
    """Parameters in billions: embeddings (and an untied LM head), attention and MLP weights."""
    per_layer = spec.hidden * (spec.heads + 2 * spec.kv_heads) * spec.head_dim  # q, k, v
    per_layer += spec.heads * spec.head_dim * spec.hidden + 3 * spec.hidden * spec.ffn  # o; gate, up, down
    head = spec.vocab * spec.hidden * (1 if spec.tied_embeddings else 2)
    return (spec.layers * per_layer + head) / 1e9


def models() -> int:
    t = table(title="isotune model presets (seeded synthetic weights; --layers N keeps the first N)")
    for col in ("preset", "params", "layers", "hidden", "heads/kv", "head\ndim", "ffn", "vocab", "positions"):
        t.add_column(col, justify="left" if col == "preset" else "right")
    for name in preset_names():
        s = load_spec(name)
        t.add_row(
            name,
            f"{params_b(s):.2f}B" if params_b(s) >= 0.1 else f"{params_b(s) * 1e3:.1f}M",
            str(s.layers),
            str(s.hidden),
            f"{s.heads}/{s.kv_heads}",
            str(s.head_dim),
            str(s.ffn),
            str(s.vocab),
            str(s.max_positions),
        )
    console().print(t)
    return 0
