"""A checkpoint folder's text side: its `tokenizer.json` (through the `tokenizers` library, no
transformers at run time), its special tokens and the ids that end a generation, and a
streaming decoder that prints a continuation as it grows.

Encoding follows transformers: a plain prompt gets the tokenizer's own special tokens (its
post-processor adds BOS where the model expects one); a chat-rendered prompt does not, since the
template writes them itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from isotune.core.errors import BadInput, first_line

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


@dataclass(kw_only=True)
class TextCodec:
    folder: Path
    tokenizer: object  # tokenizers.Tokenizer
    special: dict[str, str] = field(default_factory=dict)  # "eos_token" -> "<|im_end|>"
    stop_ids: frozenset[int] = frozenset()  # a generated id in here ends the generation
    chat_template: str | None = None

    def encode(self, text: str, special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def stream(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Text of a growing id list, handed out in pieces whose concatenation is exactly
    decode(all ids). A piece is held back while the text ends in U+FFFD: a multi-byte character
    split across tokens is printed once it is whole."""

    def __init__(self, codec: TextCodec):
        self.codec, self.ids, self.shown = codec, [], 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.codec.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        return self._take(text)

    def flush(self) -> str:
        return self._take(self.codec.decode(self.ids))

    def _take(self, text: str) -> str:
        piece, self.shown = text[self.shown :], max(self.shown, len(text))
        return piece


def has_tokenizer(folder: str | Path | None) -> bool:
    return folder is not None and (Path(folder) / "tokenizer.json").is_file()


def load_text(folder: str | Path) -> TextCodec:
    """The folder's tokenizer, special tokens, stop ids and chat template (None when it has none)."""
    from isotune.core.chat import find_template

    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise BadInput(f"{folder} has no tokenizer.json: add the checkpoint's tokenizer, or pass --prompt-ids FILE")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises its own exception types
        raise BadInput(f"{path} cannot be read ({first_line(e)}): re-save the tokenizer") from None
    config = _read_json(folder / "tokenizer_config.json")
    special = {k: _token_text(config[k]) for k in SPECIAL_KEYS if _token_text(config.get(k))}
    return TextCodec(
        folder=folder,
        tokenizer=tok,
        special=special,
        stop_ids=frozenset(_stop_ids(folder, tok, special)),
        chat_template=find_template(folder, config),
    )


def _stop_ids(folder: Path, tok, special: dict[str, str]) -> set[int]:
    """EOS ids as generation would stop on them (vLLM's rule): generation_config.json's
    eos_token_id (else config.json's), plus the tokenizer's own eos token."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        eos = _read_json(folder / name).get("eos_token_id")
        if eos is not None:
            ids.update(eos if isinstance(eos, list) else [eos])
            break
    if "eos_token" in special and tok.token_to_id(special["eos_token"]) is not None:
        ids.add(tok.token_to_id(special["eos_token"]))
    return {int(i) for i in ids}


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not valid JSON ({first_line(e)}): re-save the checkpoint") from None
    return data if isinstance(data, dict) else {}
