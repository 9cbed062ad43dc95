"""ModelSpec: the shapes and constants of a Llama-family model, from a preset or an HF folder.

Presets live in `isotune/presets/NAME.yaml` (`isotune models` lists them); a Hugging Face checkpoint folder is read from its
`config.json` (Llama, Mistral, Qwen2 and Qwen3 architectures). Nothing here touches torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from isotune.core.errors import BadInput, first_line

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"  # package data: pip installs carry it
SUPPORTED_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(kw_only=True)
class ModelSpec:
    name: str
    hidden: int
    layers: int
    heads: int  # query heads
    kv_heads: int  # == heads for MHA, fewer for GQA
    head_dim: int
    ffn: int  # MLP intermediate size
    vocab: int
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "linear"|"llama3", "factor": ..., ...}
    norm_eps: float = 1e-5
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v (not on o)
    qk_norm: bool = False  # Qwen3: an RMSNorm over each head's q and k (one weight per head dim) before RoPE
    tied_embeddings: bool = False
    max_positions: int = 4096
    sliding_window: int | None = None  # Mistral v0.1; prompts longer than it are refused
    checkpoint: str | None = None  # folder of *.safetensors, or None for synthetic weights

    def fingerprint(self) -> str:
        """sha256 of everything that shapes the computation (not the name or the folder)."""
        d = dataclasses.asdict(self)
        d.pop("name")
        d.pop("checkpoint")
        if not d["qk_norm"]:  # added later: the models before it keep their fingerprints (and plans)
            d.pop("qk_norm")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def with_layers(self, layers: int | None) -> ModelSpec:
        if layers is None:
            return self
        if not 1 <= layers <= self.layers:
            raise BadInput(f"--layers {layers} is out of range for {self.name}: use 1..{self.layers}")
        return dataclasses.replace(self, layers=layers)


def layers_text(n: int | None) -> str:
    """'1 layer', '2 layers': how titles and messages count a model's layers."""
    return f"{n} layer" if n == 1 else f"{n} layers"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def parse_dtype(name: str) -> str:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise BadInput(f"unknown dtype {name!r}: use auto, float32, bfloat16 or float16") from None


def resolve_dtype(name: str, spec: ModelSpec) -> tuple[str, str | None]:
    """--dtype, with "auto" resolved as vLLM does: the checkpoint's own dtype, except that float32
    checkpoints run in bfloat16 (twice the speed and half the memory for a rounding error no
    greedy answer notices); presets run in bfloat16. Returns (dtype, a note saying a choice was
    made for the user, or None)."""
    if name.lower() != "auto":
        return parse_dtype(name), None
    stored = checkpoint_dtype(spec)
    if stored is None:
        return "bfloat16", None
    if stored == "float32":
        return "bfloat16", (
            f"dtype auto: {spec.name} is stored in float32; running it in bfloat16 as vLLM does "
            "(--dtype float32 keeps float32)"
        )
    return stored, None


def checkpoint_dtype(spec: ModelSpec) -> str | None:
    """The dtype a checkpoint's config.json names (torch_dtype, or dtype from transformers 5);
    None for presets or a config that names none we run."""
    if spec.checkpoint is None:
        return None
    try:
        cfg = json.loads((Path(spec.checkpoint) / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    name = cfg.get("torch_dtype") or cfg.get("dtype")
    return DTYPES.get(str(name).lower()) if name else None


def load_spec(model: str, layers: int | None = None) -> ModelSpec:
    """`model` is a preset name or a checkpoint folder holding config.json."""
    path = Path(model)
    if (PRESET_DIR / f"{model}.yaml").is_file() and not path.is_dir():
        spec = _from_preset(PRESET_DIR / f"{model}.yaml")
    elif path.is_dir():
        spec = _from_hf_folder(path)
    elif "/" in model or model.startswith("."):
        raise BadInput(
            f"checkpoint folder {model} does not exist: pass a folder with config.json "
            f"and *.safetensors, or a preset ({', '.join(preset_names())})"
        )
    else:
        raise BadInput(f"unknown model preset {model!r}: use one of {', '.join(preset_names())} or a checkpoint folder")
    _check(spec)
    return spec.with_layers(layers)


def _from_preset(path: Path) -> ModelSpec:
    try:
        data = yaml.safe_load(path.read_text())
        return ModelSpec(**data)
    except (yaml.YAMLError, TypeError) as e:
        raise BadInput(f"preset {path} is malformed ({first_line(e)}): fix the file") from None


def _from_hf_folder(folder: Path) -> ModelSpec:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise BadInput(f"{folder} has no config.json: pass a Hugging Face checkpoint folder")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{cfg_path} is not valid JSON ({first_line(e)}): re-save the checkpoint") from None
    archs = cfg.get("architectures") or []
    if not any(a in SUPPORTED_ARCHS for a in archs):
        raise BadInput(
            f"{cfg_path}: architecture {archs or 'missing'} is not supported: "
            f"use a checkpoint of {', '.join(SUPPORTED_ARCHS)}"
        )
    qwen2, qwen3 = "Qwen2ForCausalLM" in archs, "Qwen3ForCausalLM" in archs
    # Qwen2's q/k/v always carry biases and its o_proj none; Qwen3's attention_bias puts them on o_proj too
    if cfg.get("mlp_bias") or (not qwen2 and cfg.get("attention_bias")):
        raise BadInput(f"{cfg_path}: biases on o_proj/MLP are not supported: use a checkpoint without them")
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        # transformers >= 5 nests rope settings in rope_parameters; older configs keep them flat.
        rope = dict(cfg.get("rope_parameters") or {})
        theta = float(rope.pop("rope_theta", cfg.get("rope_theta", 10000.0)))
        scaling = rope if rope.get("rope_type", rope.get("type", "default")) != "default" else None
        if scaling is None and cfg.get("rope_scaling"):
            scaling = dict(cfg["rope_scaling"])
        window = cfg.get("sliding_window")
        if (qwen2 or qwen3) and not cfg.get("use_sliding_window", False):
            window = None
        return ModelSpec(
            name=folder.name,
            hidden=hidden,
            layers=int(cfg["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or (128 if qwen3 else hidden // heads)),  # Qwen3Config's default: 128
            ffn=int(cfg["intermediate_size"]),
            vocab=int(cfg["vocab_size"]),
            rope_theta=theta,
            rope_scaling=scaling,
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            qkv_bias=qwen2,
            qk_norm=qwen3,
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_positions=int(cfg.get("max_position_embeddings", 4096)),
            sliding_window=int(window) if window else None,
            checkpoint=str(folder.resolve()),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(f"{cfg_path} lacks or mangles a field ({first_line(e)}): re-save the checkpoint") from None


def _check(spec: ModelSpec) -> None:
    if spec.heads % spec.kv_heads:
        raise BadInput(f"{spec.name}: {spec.heads} query heads are not a multiple of {spec.kv_heads} KV heads")
    if spec.rope_scaling is not None:
        kind = spec.rope_scaling.get("rope_type", spec.rope_scaling.get("type"))
        if kind not in ROPE_TYPES:
            raise BadInput(f"{spec.name}: rope scaling {kind!r} is not supported: use default, linear or llama3")
    for field in ("hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab"):
        if getattr(spec, field) < 1:
            raise BadInput(f"{spec.name}: {field} must be positive")
    if not math.isfinite(spec.rope_theta):
        raise BadInput(f"{spec.name}: rope_theta must be finite")


def check_seq_lens(spec: ModelSpec, lens: list[int], what: str, fix: str = "use shorter lengths") -> None:
    """Every length must fit the model's positions (and the sliding window we do not implement)."""
    longest = max(lens)
    if longest > spec.max_positions:
        raise BadInput(f"{what} {longest} exceeds {spec.name}'s {spec.max_positions} positions: {fix}")
    if spec.sliding_window and longest > spec.sliding_window:
        raise BadInput(
            f"{what} {longest} exceeds {spec.name}'s sliding window {spec.sliding_window}, which isotune does not "
            f"implement: {fix}"
        )
