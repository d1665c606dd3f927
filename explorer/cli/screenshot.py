"""``explorer screenshot``: run a view headless and save it as a PNG of exactly --size."""

from __future__ import annotations

import argparse

from ..atomic import check_output
from ..errors import ExplorerError
from .common import add_model_options, with_prompt_options

VIEW_NAMES = ("generate", "attention", "speculative", "amp", "autograd", "ddp")


def add_parser(sub) -> None:
    p = sub.add_parser("screenshot", help="run a view headless and save it as a PNG of exactly --size")
    p.add_argument(
        "--view", required=True,
        help="generate, attention, speculative, amp, autograd or ddp; promptset (or speculative) with --run RUN.jsonl",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="FILE.png", help="PNG file to write")
    p.add_argument("--size", default="1920x1080", help="WxH, or 720p / 1080p / 2160p (default: 1920x1080)")
    p.add_argument("--step", type=int, default=None,
                   help="step to show, counted from 1 as on screen (default: where a finished run opens in the app)")
    add_set_option(p, "a view setting, as in a tour's settings (repeat: --set method=tree --set tree_depth=4)")
    p.add_argument("--run", metavar="RUN.jsonl", help="a prompt-set run file: the promptset view replaying it, "
                   "nothing recomputed (--set prompt=ID --set config=N pick the row and configuration)")  # fmt: skip
    add_model_options(p)
    p.set_defaults(func=run)


def add_set_option(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def parse_settings(items: list[str]) -> dict:
    """``--set KEY=VALUE`` pairs; VALUE is read as a TOML value (4, 0.5, true, "tree"), else as a plain string."""
    from ..recording.tour import tomllib

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ExplorerError(f"--set takes KEY=VALUE (a view setting), got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    if args.step is not None and args.step < 1:
        raise ExplorerError(f"--step must be an integer >= 1: steps count from 1 (got {args.step})")
    if args.run is not None or args.view == "promptset":  # a stored run: explorer/cli/open.py
        from .open import screenshot_run_file

        return screenshot_run_file(args)
    from ..recording.tour import check_settings
    from ..recording.video import parse_size

    if args.view not in VIEW_NAMES:
        raise ExplorerError(f"unknown view {args.view!r}; available: {', '.join(VIEW_NAMES)}")
    settings = check_settings(args.view, parse_settings(args.set))
    size = parse_size(args.size, even=False)
    check_output(args.out, (".png",), "--out")  # before any work
    from ..ui.app import make_session, screenshot

    session = with_prompt_options(make_session(args.model, args.draft, args.prompt, args.device, args.dtype), args)
    out = screenshot(
        session, args.view, args.out, size, step=None if args.step is None else args.step - 1,
        theme=args.theme or "light", settings=settings,
    )  # fmt: skip
    print(out)
    return 0
