"""One rank's weights: read its slices from *.safetensors, or make seeded synthetic ones.

Checkpoints use Hugging Face Llama/Mistral/Qwen2 tensor names. Only safetensors are read (no
pickle, so a model folder can never run code); each rank reads just its slices via mmap.
Synthetic weights depend only on (seed, tensor name), so every TP size sees the same model.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from isotune.core.errors import BadInput
from isotune.core.shard import Shard
from isotune.core.spec import ModelSpec


@dataclass(kw_only=True)
class LayerWeights:
    attn_norm: torch.Tensor  # (hidden,)
    wqkv: torch.Tensor  # ((q_heads + 2*kv_heads) * head_dim, hidden), fused
    bqkv: torch.Tensor | None  # ((q_heads + 2*kv_heads) * head_dim,) or None
    wo: torch.Tensor  # (hidden, q_heads * head_dim), row-parallel
    mlp_norm: torch.Tensor  # (hidden,)
    w_gate_up: torch.Tensor  # (2 * ffn_local, hidden), fused
    w_down: torch.Tensor  # (hidden, ffn_local), row-parallel
    qk_norm: torch.Tensor | None = None  # (q_heads + kv_heads, head_dim): q_norm per q head, k_norm per kv head


@dataclass(kw_only=True)
class ModelWeights:
    embed: torch.Tensor  # (vocab, hidden), replicated
    layers: list[LayerWeights]
    norm: torch.Tensor  # (hidden,)
    lm_head: torch.Tensor  # (vocab, hidden), replicated (may alias embed)


class _Source:
    """Where tensors come from: get(name, rows, cols) returns that slice in fp32 or native dtype."""

    def get(
        self, name: str, shape: tuple[int, ...], rows: slice | None = None, cols: slice | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class SafetensorsSource(_Source):
    def __init__(self, folder: Path):
        from safetensors import safe_open

        self._open = safe_open
        index = folder / "model.safetensors.index.json"
        single = folder / "model.safetensors"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
                raise BadInput(f"{index} is malformed: re-save the checkpoint") from None
            self.files = {name: folder / f for name, f in weight_map.items()}
        elif single.is_file():
            self.files = None
            self.single = single
        elif any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
            # pickled weights can run code when loaded: isotune reads safetensors only
            raise BadInput(
                f"{folder} holds only pickled weights (*.bin/*.pt), which isotune does not load (unpickling can "
                "run code): convert them to safetensors (save_pretrained(..., safe_serialization=True))"
            )
        else:
            raise BadInput(
                f"{folder} has no model.safetensors or model.safetensors.index.json: "
                "save the checkpoint with safe_serialization=True"
            )
        self.folder = folder
        self._handles: dict[Path, object] = {}

    def _handle(self, name: str):
        path = self.single if self.files is None else self.files.get(name)
        if path is None:
            raise BadInput(f"{self.folder}: tensor {name} is not in the checkpoint index: re-save the checkpoint")
        return self._open_path(path)

    def _open_path(self, path: Path):
        if path not in self._handles:
            if not path.is_file():
                raise BadInput(f"{self.folder}: shard {path.name} is missing: re-download the checkpoint")
            try:
                self._handles[path] = self._open(str(path), framework="pt")
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise BadInput(
                    f"{path} is not a readable safetensors file ({str(e).splitlines()[0][:120]}): "
                    "re-download the checkpoint"
                ) from None
        return self._handles[path]

    def check(self) -> None:
        """Open every file's header (no tensor data is read), so a missing or corrupt shard is
        reported before any rank starts."""
        for path in sorted(set(self.files.values())) if self.files is not None else [self.single]:
            self._open_path(path)

    def get(self, name, shape, rows=None, cols=None):
        handle = self._handle(name)
        if name not in handle.keys():
            raise BadInput(f"{self.folder}: tensor {name} is missing: re-save the checkpoint")
        sl = handle.get_slice(name)
        if tuple(sl.get_shape()) != tuple(shape):
            raise BadInput(
                f"{self.folder}: tensor {name} has shape {tuple(sl.get_shape())}, config.json "
                f"implies {tuple(shape)}: the checkpoint and its config disagree"
            )
        try:
            if cols is not None:
                return sl[:, cols]
            return sl[rows] if rows is not None else sl[:]
        except Exception as e:
            raise BadInput(f"{self.folder}: tensor {name} cannot be read ({str(e)[:80]}): re-download it") from None


ROW_PARALLEL = ("o_proj.weight", "down_proj.weight")  # the weights TP shards by columns


class SyntheticSource(_Source):
    """Seeded random weights, scaled so activations stay O(1) through the layers, drawn for the
    requested slice only: a rank never makes the full tensor, so big presets load in seconds.

    Each tensor is cut along the dimension its shards slice (rows, or columns for the
    row-parallel O and down projections) into blocks of about BASE values. Block b is a window,
    at an offset seeded by (seed, name, b), of a per-tensor random base vector: the values of a
    block depend only on (seed, name, its place in the full tensor), so every TP size sees the
    same model, and making one costs a memory copy instead of a random draw per value.

    The base vector is drawn by the CPU generator (so a GPU and a CPU rank see the same model)
    and moved once; the blocks are copied on `device`, so a GPU rank's shard never passes
    through host memory."""

    BASE = 1 << 20  # values in a tensor's random base vector; also the most in one block

    def __init__(self, seed: int, dtype: torch.dtype = torch.float32, device="cpu"):
        self.seed, self.dtype = seed, dtype  # blocks are cast as they are copied: no float32 copy of a shard
        self.device = torch.device(device)

    def _seed(self, *parts) -> int:
        return zlib.crc32(repr((self.seed, *parts)).encode())

    def _base(self, name: str, std: float) -> torch.Tensor:
        """(2 * BASE,): the base vector twice over, so any window of up to BASE values is a slice."""
        gen = torch.Generator().manual_seed(self._seed(name))
        base = (torch.randn(self.BASE, generator=gen) * std).to(self.device)  # 4 MiB moved per tensor, not the shard
        return torch.cat([base, base])

    def get(self, name, shape, rows=None, cols=None):
        if name.endswith("norm.weight"):
            full = torch.ones(shape, dtype=self.dtype, device=self.device)
            return full[rows] if rows is not None else full
        std = 1.0 if "embed" in name else 0.5 / shape[-1] ** 0.5
        base = self._base(name, std)
        if len(shape) == 1:  # a bias: one value per row
            return self._rows(base, name, (shape[0], 1), rows).view(-1)
        if name.endswith(ROW_PARALLEL):  # sliced by columns: blocks of columns, filled as the transpose's rows
            out = self._rows(base, name, (shape[1], shape[0]), cols).t()  # (shape[0], cols)
            return out[rows] if rows is not None else out
        out = self._rows(base, name, shape, rows)
        return out[:, cols] if cols is not None else out

    def _rows(self, base: torch.Tensor, name: str, shape: tuple[int, int], rows: slice | None) -> torch.Tensor:
        """Rows `rows` of the (r, c) tensor whose blocks of rows are windows of `base`."""
        r, c = shape
        lo, hi, _ = (rows or slice(0, r)).indices(r)
        out = torch.empty(hi - lo, c, dtype=self.dtype, device=self.device)  # (rows of the slice, c)
        height = max(1, self.BASE // c)  # rows per block
        for b in range(lo // height, (hi - 1) // height + 1):
            b_lo, b_hi = b * height, min(r, (b + 1) * height)  # the block's rows in the full tensor
            block = self._window(base, name, b, (b_hi - b_lo) * c).view(b_hi - b_lo, c)
            s_lo, s_hi = max(lo, b_lo), min(hi, b_hi)
            out[s_lo - lo : s_hi - lo].copy_(block[s_lo - b_lo : s_hi - b_lo])  # and casts to the target dtype
        return out

    def _window(self, base: torch.Tensor, name: str, block: int, n: int) -> torch.Tensor:
        start = self._seed(name, block) % self.BASE
        return base[start : start + n]


def check_checkpoint(spec: ModelSpec) -> None:
    """Fail fast, in the launching process, on a checkpoint folder whose files cannot be read."""
    if spec.checkpoint:
        SafetensorsSource(Path(spec.checkpoint)).check()


def load_weights(spec: ModelSpec, shard: Shard, dtype: torch.dtype, device, seed: int = 0) -> ModelWeights:
    src: _Source = SafetensorsSource(Path(spec.checkpoint)) if spec.checkpoint else SyntheticSource(seed, dtype, device)
    d, h = spec.head_dim, spec.hidden
    q_rows = slice(shard.q_head_start * d, (shard.q_head_start + shard.q_heads) * d)
    kv_rows = slice(shard.kv_head_start * d, (shard.kv_head_start + shard.kv_heads) * d)
    f_rows = slice(shard.ffn_start, shard.ffn_start + shard.ffn)

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype).contiguous()

    layers = []
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        qkv = [
            src.get(p + "self_attn.q_proj.weight", (spec.heads * d, h), rows=q_rows),
            src.get(p + "self_attn.k_proj.weight", (spec.kv_heads * d, h), rows=kv_rows),
            src.get(p + "self_attn.v_proj.weight", (spec.kv_heads * d, h), rows=kv_rows),
        ]
        bqkv = None
        if spec.qkv_bias:
            bqkv = put(
                torch.cat(
                    [
                        src.get(p + "self_attn.q_proj.bias", (spec.heads * d,), rows=q_rows),
                        src.get(p + "self_attn.k_proj.bias", (spec.kv_heads * d,), rows=kv_rows),
                        src.get(p + "self_attn.v_proj.bias", (spec.kv_heads * d,), rows=kv_rows),
                    ]
                )
            )
        qk_norm = None
        if spec.qk_norm:  # one (head_dim,) weight each for q and k, the same for every head: this rank's heads
            q_norm = src.get(p + "self_attn.q_norm.weight", (d,)).expand(shard.q_heads, d)
            k_norm = src.get(p + "self_attn.k_norm.weight", (d,)).expand(shard.kv_heads, d)
            qk_norm = put(torch.cat([q_norm, k_norm]))  # (Hq + Hkv, D), as the fused q|k heads lie
        gate_up = [
            src.get(p + "mlp.gate_proj.weight", (spec.ffn, h), rows=f_rows),
            src.get(p + "mlp.up_proj.weight", (spec.ffn, h), rows=f_rows),
        ]
        layers.append(
            LayerWeights(
                attn_norm=put(src.get(p + "input_layernorm.weight", (h,))),
                wqkv=put(torch.cat(qkv)),
                bqkv=bqkv,
                wo=put(src.get(p + "self_attn.o_proj.weight", (h, spec.heads * d), cols=q_rows)),
                mlp_norm=put(src.get(p + "post_attention_layernorm.weight", (h,))),
                w_gate_up=put(torch.cat(gate_up)),
                w_down=put(src.get(p + "mlp.down_proj.weight", (h, spec.ffn), cols=f_rows)),
                qk_norm=qk_norm,
            )
        )
    embed = put(src.get("model.embed_tokens.weight", (spec.vocab, h)))
    lm_head = embed if spec.tied_embeddings else put(src.get("lm_head.weight", (spec.vocab, h)))
    return ModelWeights(embed=embed, layers=layers, norm=put(src.get("model.norm.weight", (h,))), lm_head=lm_head)
