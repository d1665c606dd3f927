"""Prompts as the model expects them: BOS/EOS as the tokenizer adds them, and chat templates rendered the way
transformers renders them (a sandboxed Jinja environment with the same options and helpers).

For a tokenizer.json, its post-processor decides about BOS, as in transformers' fast tokenizers (Llama 3 and
TinyLlama add it there; SmolLM2 and Qwen2 add nothing; transformers 5 leaves it alone whatever
``tokenizer_config.json``'s ``add_bos_token`` says). A GGUF file has no post-processor: its ``add_bos_token`` /
``add_eos_token`` flags build one (:func:`apply_special_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tokenizers import Tokenizer, processors

from ..errors import ExplorerError


@dataclass(frozen=True)
class PromptFormat:
    """What a tokenizer configuration says about special tokens and chat."""

    bos_token: str | None = None
    eos_token: str | None = None
    add_bos_token: bool | None = None  # None: the configuration does not say (tokenizer.json decides)
    add_eos_token: bool | None = None
    chat_template: str | None = None

    @classmethod
    def from_tokenizer_config(cls, config: dict[str, Any], chat_template: str | None = None) -> PromptFormat:
        """Read ``tokenizer_config.json``; a ``chat_template.jinja`` file (``chat_template``) takes precedence."""
        template = chat_template if chat_template is not None else config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        return cls(
            bos_token=_token_text(config.get("bos_token")),
            eos_token=_token_text(config.get("eos_token")),
            add_bos_token=_flag(config.get("add_bos_token")),
            add_eos_token=_flag(config.get("add_eos_token")),
            chat_template=template if isinstance(template, str) and template.strip() else None,
        )


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", "lstrip": false, ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def apply_special_tokens(tokenizer: Tokenizer, fmt: PromptFormat) -> None:
    """Give a post-processor-less tokenizer (built from GGUF metadata) the BOS/EOS the flags ask for."""
    bos = fmt.bos_token if fmt.add_bos_token and _has(tokenizer, fmt.bos_token) else None
    eos = fmt.eos_token if fmt.add_eos_token and _has(tokenizer, fmt.eos_token) else None
    single = f"{bos + ':0 ' if bos else ''}$A:0{' ' + eos + ':0' if eos else ''}"
    pair = f"{single}{' ' + bos + ':1' if bos else ''} $B:1{' ' + eos + ':1' if eos else ''}"
    specials = [(t, tokenizer.token_to_id(t)) for t in dict.fromkeys(x for x in (bos, eos) if x)]
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def _has(tokenizer: Tokenizer, token: str | None) -> bool:
    return token is not None and tokenizer.token_to_id(token) is not None


def chat_messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": prompt}]


def render_chat(fmt: PromptFormat, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Render the chat template as transformers does (trim_blocks, lstrip_blocks, loop controls, tojson without HTML
    escaping, raise_exception, strftime_now), inside jinja2's immutable sandbox: templates come from the Hub."""
    if fmt.chat_template is None:
        raise ExplorerError("this model has no chat template; leave out --chat (or the chat toggle)")
    try:
        template = _compile(fmt.chat_template)
        return template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=fmt.bos_token or "",
            eos_token=fmt.eos_token or "",
        )
    except ExplorerError:
        raise
    except Exception as exc:  # jinja2's TemplateError and anything a template raises
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExplorerError(f"the chat template failed: {message}") from None


def _compile(source: str):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise ExplorerError(f"the chat template refused the conversation: {message}")

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ExplorerError(f"the chat template is not valid Jinja (line {exc.lineno}): {exc.message}") from None


def encode_prompt(
    tokenizer: Tokenizer, fmt: PromptFormat, prompt: str, chat: bool = False, system: str | None = None
) -> list[int]:
    """Token ids for a prompt: ``tok(prompt)`` (special tokens per the configuration), or with ``chat`` the ids of
    ``apply_chat_template([system?, user], add_generation_prompt=True)`` (the template writes its own BOS)."""
    if not chat:
        if system:
            raise ExplorerError("a system prompt needs chat mode (--chat)")
        return tokenizer.encode(prompt).ids
    text = render_chat(fmt, chat_messages(prompt, system))
    return tokenizer.encode(text, add_special_tokens=False).ids
