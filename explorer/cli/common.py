"""What several subcommands share: the model options (spelled the same everywhere, given before or after the
subcommand), reading an options schema's flags, and JSON / text output."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ExplorerError
from ..models.options import DEFAULT_PROMPT, DTYPE_NAMES
from ..options import Schema

MODEL_FLAGS = ("model", "draft", "prompt", "chat", "system", "ignore_eos", "device", "dtype", "theme")
DEVICE_HELP = "cpu or cuda (default: cuda when available)"


_HEAD, _, _INDENT = DEFAULT_PROMPT.partition("\n")
PROMPT_HELP = f"the prompt (default: {_HEAD!r}, a new line and {len(_INDENT)} spaces: a Python function to go on)"


def add_model_options(
    p, top: bool = False, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
    prompt_help: str = PROMPT_HELP,
) -> None:  # fmt: skip
    """--model (alias --target), --draft, --prompt, --chat, --system, --ignore-eos, --device, --dtype, --theme
    (``only``: just these, e.g. into one argument group). On the top-level parser they default to None; on a
    subcommand they default to "not given" (SUPPRESS), so that ``explorer --model DIR generate`` and ``explorer
    generate --model DIR`` mean the same and neither overrides the other."""
    default = None if top else argparse.SUPPRESS
    flags = {
        "model": (("--model", "--target"), dict(metavar="MODEL", help="target model: a Hugging Face layout directory, "
                  "a .gguf file or a Hub id org/name[@revision] (default: the shipped demo target)")),  # fmt: skip
        "draft": (("--draft",), dict(metavar="DIR", help="draft model directory (default: the demo draft with the "
                                     "demo target; none with your own target)")),  # fmt: skip
        "prompt": (("--prompt",), dict(metavar="TEXT", help=prompt_help)),
        "chat": (("--chat",), dict(action="store_true", help="wrap the prompt in the model's chat template as a user "
                 "turn with the assistant's turn opened (instruct models)")),  # fmt: skip
        "system": (("--system",), dict(metavar="TEXT", help="a system prompt for --chat")),
        "ignore_eos": (("--ignore-eos",), dict(action="store_true", help="keep decoding past the model's "
                       "end-of-sequence tokens (generation_config.json's eos_token_id)")),  # fmt: skip
        "device": (("--device",), dict(help=DEVICE_HELP)),
        "dtype": (("--dtype",), dict(choices=DTYPE_NAMES, help="model dtype (default: float32 on CPU, bfloat16 on "
                                     "CUDA)")),  # fmt: skip
        "theme": (("--theme",), dict(choices=("light", "dark"), help="colour theme (default: light)")),
    }
    for name, (names, kw) in flags.items():
        if name not in skip and (only is None or name in only):
            p.add_argument(*names, dest=name, default=default, **kw)


def prepare_prompt(lm, prompt: str, args: argparse.Namespace) -> list[int]:
    """The prompt's ids as --chat / --system ask; with --ignore-eos the model's eos ids are dropped for this run."""
    if getattr(args, "ignore_eos", None):
        lm.eos_token_ids = ()
    return lm.prompt_ids(prompt, chat=bool(getattr(args, "chat", None)), system=getattr(args, "system", None))


def reply_of(lm, ids: list[int]) -> str:
    """The decoded new tokens without control tokens (``<|im_end|>``, ``</s>``): what --json's ``text`` holds and
    what is printed."""
    from ..models.text import reply_text

    return reply_text(lm.tokenizer, ids, lm.eos_token_ids)


def print_exchange(prompt: str, reply: str, args: argparse.Namespace) -> None:
    """On stdout: with --chat the turns apart, one labelled block each (system, user, assistant); without, the
    prompt and its continuation as the one text they are."""
    if not getattr(args, "chat", None):
        print(prompt + reply)
        return
    system = getattr(args, "system", None)
    if system:
        print(f"system: {system}")
    print(f"user: {prompt}")
    print(f"assistant: {reply.strip()}")


def with_prompt_options(session, args: argparse.Namespace):
    """A Session with --chat, --system and --ignore-eos applied (the GUI and screenshots)."""
    session.chat = bool(getattr(args, "chat", None))
    session.system = getattr(args, "system", None)
    session.ignore_eos = bool(getattr(args, "ignore_eos", None))
    return session


def model_args(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in MODEL_FLAGS}


def schema_values(schema: Schema, args: argparse.Namespace) -> dict[str, Any]:
    """The checked values of a schema's flags (``--tree-depth must be an integer in 1..12 (got 0)``)."""
    return schema.from_args(args)


def given(schema: Schema, args: argparse.Namespace, name: str) -> bool:
    """Whether the user wrote this option's flag."""
    return getattr(args, schema[name].dest, None) is not None


def print_json(obj: Any) -> None:
    print(json.dumps(obj))


def check_device(device: str | None) -> str | None:
    """cpu, cuda or cuda:N; anything else is refused before a model loads."""
    if device is None:
        return None
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ExplorerError(f"--device must be cpu, cuda or cuda:N (got {device!r})")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExplorerError("--device cuda was asked for, but torch sees no CUDA device")
    return device
