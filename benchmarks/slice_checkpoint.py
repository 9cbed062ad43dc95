"""Cut a Hugging Face Llama-family checkpoint down to its first layers and vocabulary rows, in
bfloat16, so a trained checkpoint fits in a few tens of MiB: small enough to copy onto a GPU machine
that has no network access.

    python3 benchmarks/slice_checkpoint.py SRC DST [--layers 2] [--vocab 8192]

The weights kept are the source's, unchanged but for rounding to bfloat16 (the tests' SmolLM2 is
itself dequantized from a Q4_1 GGUF): trained weights, with a trained model's activation and
logit ranges, which is what `isotune doctor --checkpoint DST` checks ISO == baseline on (read
from safetensors onto the device). It is no longer a language model (most of its layers cut, the
tokenizer dropped), so it is for checks of equality only, never for text.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

EMBED = {"model.embed_tokens.weight", "lm_head.weight"}  # (vocab, hidden): rows past --vocab go


def slice_checkpoint(src: Path, dst: Path, layers: int, vocab: int) -> int:
    config = json.loads((src / "config.json").read_text())
    if layers > config["num_hidden_layers"] or vocab > config["vocab_size"]:
        raise SystemExit(f"{src} has {config['num_hidden_layers']} layers and {config['vocab_size']} rows only")
    files = sorted(src.glob("*.safetensors"))
    kept: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                m = re.match(r"model\.layers\.(\d+)\.", name)
                if m and int(m.group(1)) >= layers:
                    continue
                t = st.get_tensor(name)
                kept[name] = (t[:vocab] if name in EMBED else t).to(torch.bfloat16).contiguous()
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(kept, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config |= {"num_hidden_layers": layers, "vocab_size": vocab, "dtype": "bfloat16"}
    config.pop("torch_dtype", None)  # an older config's name for it, now stale
    for key, value in list(config.items()):  # per-layer lists (transformers 5: layer_types) keep their first
        if key.endswith("layer_types") and isinstance(value, list):
            config[key] = value[:layers]
    config["_sliced_from"] = f"{config.get('_model_name_or_path', src.name)}: first {layers} layers, {vocab} rows"
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)  # whole or not at all
    return sum(t.numel() * t.element_size() for t in kept.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    a = p.parse_args()
    size = slice_checkpoint(a.src, a.dst, a.layers, a.vocab)
    print(f"{a.dst}: {a.layers} layers, {a.vocab} rows, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
