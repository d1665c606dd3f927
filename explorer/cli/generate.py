"""``explorer generate``: greedy or sampled decoding, the generate view's computation."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..attention.options import BACKENDS
from ..models.options import GENERATE_CLI
from .common import add_model_options, check_device, prepare_prompt, print_exchange, reply_of


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="decode from a model (greedy unless --temperature > 0)")
    add_model_options(p, skip=("draft", "theme"))
    GENERATE_CLI.add_arguments(p)
    p.add_argument(
        "--attention", default="sdpa", choices=BACKENDS,
        help="attention backend: torch SDPA, the FlashAttention Triton kernel (interpreted on CPU: slow), or its "
        "torch twin (default: sdpa)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..attention.backends import use_backend
    from ..models.checkpoint import default_model_dirs, load_model
    from ..models.generate import generate
    from ..session import DEFAULT_PROMPT

    o = GENERATE_CLI.from_args(args)
    prompt = DEFAULT_PROMPT if args.prompt is None else args.prompt
    lm = load_model(args.model or default_model_dirs()["target"], dtype=args.dtype, device=check_device(args.device))
    use_backend(lm.model, args.attention)
    prompt_ids = prepare_prompt(lm, prompt, args)
    t0 = time.perf_counter()
    new = generate(lm, prompt_ids, o["max_new"], o["temperature"], o["top_k"] or None, o["seed"])
    seconds = time.perf_counter() - t0
    text = reply_of(lm, new)
    result = {
        "model": str(lm.path),
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "attention": args.attention,
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "token_ids": new,
        "text": text,
        "tokens_per_s": len(new) / seconds if seconds > 0 else None,
        "seconds": seconds,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_exchange(prompt, text, args)
        print(
            f"[{len(new)} tokens, {result['tokens_per_s']:.1f} tokens/s, {lm.name}, "
            f"{result['device']} {result['dtype']}]",
            file=sys.stderr,
        )
    return 0
