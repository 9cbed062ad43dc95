"""Chat templates: find a checkpoint's Jinja template and render messages with it.

A template comes from the model folder, so it is untrusted input: it renders in jinja2's
immutable sandbox (no attribute tricks, no mutation of what we pass in). The environment gives
templates what Hugging Face's renderer gives them, since templates are written against it:
trim_blocks/lstrip_blocks, loop controls, `raise_exception`, a `tojson` that keeps non-ASCII,
`strftime_now`, and the special tokens by name (`bos_token`, `eos_token`, ...).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from isotune.core.errors import BadInput, first_line

ROLES = ("system", "user", "assistant", "tool")


class TemplateRaised(Exception):
    """The template called raise_exception(message): it refuses these messages."""


def find_template(folder: Path, tokenizer_config: dict) -> str | None:
    """chat_template.jinja beside the tokenizer, else tokenizer_config.json's chat_template (a
    string, or a list of named templates of which "default" is the one)."""
    path = folder / "chat_template.jinja"
    if path.is_file():
        return path.read_text()
    t = tokenizer_config.get("chat_template")
    if isinstance(t, list):
        named = {d.get("name"): d.get("template") for d in t if isinstance(d, dict)}
        t = named.get("default")
    return t if isinstance(t, str) and t.strip() else None


def check_messages(messages, where: str) -> list[dict]:
    """`messages` must be a non-empty list of {"role": ..., "content": str}."""
    if not isinstance(messages, list) or not messages:
        raise BadInput(f'{where}: "messages" must be a non-empty list of {{"role": ..., "content": ...}}')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise BadInput(
                f'{where}: message {i} must be {{"role": one of {", ".join(ROLES)}, "content": "text"}}, not {m!r:.60}'
            )
    return messages


# what render_chat itself gives the template: the variables, and the functions of its sandbox
# (a variable would replace a global: raise_exception as a string breaks the template's call)
RESERVED = ("messages", "add_generation_prompt", "raise_exception", "strftime_now")


def template_kwargs(value, where: str, special: dict[str, str]) -> dict:
    """Extra variables for the chat template (vLLM's chat_template_kwargs, e.g. Qwen3's
    {"enable_thinking": false}), checked: a JSON object whose keys do not override what the
    template is given anyway. `value` is the flag's JSON text or a JSON Lines entry's object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested past Python's limit
            raise BadInput(
                f"{where} is not JSON ({first_line(e)}): give an object, e.g. '{{\"enable_thinking\": false}}'"
            ) from None
    if not isinstance(value, dict):
        raise BadInput(f'{where} must be a JSON object of template variables, e.g. {{"enable_thinking": false}}')
    taken = [k for k in value if k in RESERVED or k in special]
    if taken:
        raise BadInput(f"{where}: {', '.join(taken)} is set by isotune itself: leave it out")
    return value


def render_chat(
    template: str, messages: list[dict], special: dict[str, str], where: str, extra: dict | None = None
) -> str:
    """The prompt text for `messages`, ending with the assistant's turn opened; `extra`: more
    template variables (checked by template_kwargs)."""
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    def raise_exception(message: str):
        raise TemplateRaised(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent, **kw)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=True, **special, **(extra or {})
        )
    except TemplateRaised as e:
        raise BadInput(f"{where}: the chat template refuses these messages: {e}") from None
    except SecurityError as e:
        raise BadInput(f"{where}: the chat template tried something unsafe ({e}) and was stopped") from None
    except (TemplateError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise BadInput(f"{where}: the chat template failed ({first_line(e)}): fix or replace it") from None
