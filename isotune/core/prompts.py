"""Where `run`'s prompts come from: text (--prompt, --prompt-file, --prompts FILE.jsonl, with the
chat template under --chat), token ids (--prompt-ids) or a seeded random prompt (--seq-len).
All are read and tokenized before any rank starts, so a bad line is one error, not a dead rank.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from isotune.core.chat import check_messages, render_chat, template_kwargs
from isotune.core.errors import BadInput, first_line
from isotune.core.text import TextCodec

TEXT_FLAGS = ("--prompt", "--prompt-file", "--prompts")


@dataclass(kw_only=True)
class Prompt:
    ids: list[int]
    text: str | None = None  # the prompt as the user wrote it (chat: the last user message)
    where: str = "prompt"  # names it in messages: "--prompt", "line 3 of p.jsonl"


def text_prompts(
    codec: TextCodec,
    prompt: str | None,
    prompt_file: str | None,
    prompts_file: str | None,
    chat: bool,
    kwargs_json: str | None = None,
) -> list[Prompt]:
    """Tokenized prompts from whichever text flag was given (exactly one); `kwargs_json`: the
    --chat-template-kwargs object, which a JSON Lines entry's own "chat_template_kwargs" extends."""
    flag = {} if kwargs_json is None else template_kwargs(kwargs_json, "--chat-template-kwargs", codec.special)
    if prompts_file is not None:
        entries = read_jsonl(prompts_file)
        if kwargs_json is not None and not chat and not any("messages" in e for e, _ in entries):
            # the flag would change nothing: say so rather than run without it
            raise BadInput(
                f'--chat-template-kwargs is for chat prompts, and no line of {prompts_file} has "messages": '
                "run with --chat, or drop the flag"
            )
        return [_one(codec, entry, where, chat, flag) for entry, where in entries]
    if prompt_file is not None:
        p = Path(prompt_file)
        if not p.is_file():
            raise BadInput(f"--prompt-file {prompt_file} does not exist: give a text file")
        try:
            prompt = p.read_text()
        except UnicodeDecodeError:
            raise BadInput(f"--prompt-file {prompt_file} is not UTF-8 text: save it as UTF-8") from None
        return [_one(codec, {"prompt": prompt}, f"--prompt-file {prompt_file}", chat, flag)]
    return [_one(codec, {"prompt": prompt}, "--prompt", chat, flag)]


def read_jsonl(path: str) -> list[tuple[dict, str]]:
    """(entry, "line N of FILE") per non-blank line; each entry has "prompt" or "messages"."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f'--prompts {path} does not exist: give a JSON Lines file, one {{"prompt": "..."}} per line')
    try:
        lines = p.read_text().splitlines()
    except UnicodeDecodeError:
        raise BadInput(f"--prompts {path} is not UTF-8 text: save it as UTF-8") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {n} of {path}"
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested past Python's limit
            raise BadInput(f"{where} is not JSON ({first_line(e)}): write one JSON object per line") from None
        if not isinstance(entry, dict) or ("prompt" in entry) == ("messages" in entry):
            raise BadInput(f'{where}: give exactly one of {{"prompt": "text"}} or {{"messages": [...]}}')
        out.append((entry, where))
    if not out:
        raise BadInput(f'--prompts {path} is empty: write one {{"prompt": "..."}} per line')
    return out


def _one(codec: TextCodec, entry: dict, where: str, chat: bool, flag: dict) -> Prompt:
    own = entry.get("chat_template_kwargs")
    if own is not None and not ("messages" in entry or chat):
        raise BadInput(f'{where}: "chat_template_kwargs" is for chat prompts: give "messages", or run with --chat')
    if "messages" in entry or chat:
        if "messages" in entry:
            messages = check_messages(entry["messages"], where)
        else:
            messages = [{"role": "user", "content": _text(entry["prompt"], where)}]
        if codec.chat_template is None:
            raise BadInput(
                f"{where}: {codec.folder} has no chat template (chat_template.jinja or tokenizer_config.json): "
                "drop --chat and write the prompt as plain text"
            )
        extra = flag | ({} if own is None else template_kwargs(own, f'{where}: "chat_template_kwargs"', codec.special))
        rendered = render_chat(codec.chat_template, messages, codec.special, where, extra)
        ids = codec.encode(rendered, special_tokens=False)  # the template wrote the special tokens
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
    else:
        text = _text(entry["prompt"], where)
        ids = codec.encode(text)
    if not ids:
        raise BadInput(f"{where} encodes to no tokens: give some text")
    return Prompt(ids=ids, text=text, where=where)


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where}: the prompt must be non-empty text")
    return value
