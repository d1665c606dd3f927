"""The ``explorer`` command: parse, dispatch, and turn every known error into one line. Every computation a view
shows is reachable here too, with ``--json`` output; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import ExplorerError
from . import amp, attention, generate, gui, info, record, screenshot, speculate, train_demo
from .common import MODEL_FLAGS, add_model_options

SUBCOMMANDS = (info, generate, attention, speculate, screenshot, record, train_demo, amp)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="explorer",
        description="Watch real FlashAttention, speculative decoding and loss scaling on a loaded model. "
        "Without a subcommand: the desktop app.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"explorer {__version__}")
    add_model_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The namespace a subcommand runs on: model options not given anywhere are None."""
    args = build_parser().parse_args(argv)
    for name in MODEL_FLAGS:
        if not hasattr(args, name):
            setattr(args, name, None)
    if args.command is None:
        args.func = gui.run
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return args.func(args)
    except ExplorerError as exc:
        print(f"explorer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except MemoryError:
        print("explorer: error: out of memory; try a smaller model, dtype or prompt", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
