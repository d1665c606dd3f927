"""The ``explorer`` command: parse, dispatch, and turn every known error into one line. Every computation a view
shows is reachable here too, with ``--json`` output; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import __version__
from ..errors import ExplorerError
from ..interrupt import Terminated, interrupts
from . import (
    amp,
    attention,
    autograd,
    convert,
    ddp,
    generate,
    gui,
    info,
    open,
    record,
    screenshot,
    speculate,
    train_demo,
    train_heads,
)
from .common import MODEL_FLAGS, add_model_options

SUBCOMMANDS = (info, generate, attention, speculate, screenshot, record, train_demo, amp, autograd, ddp, open,
               train_heads, convert)  # fmt: skip


class Parser(argparse.ArgumentParser):
    """argparse with its errors in the explorer's one-line form (no usage block): ``explorer: error: ...``."""

    def error(self, message: str):
        command = self.prog.removeprefix("explorer").strip()
        hint = f"explorer {command} --help" if command else "explorer --help"
        self.exit(2, f"explorer: error: {' '.join(message.split())} (see {hint})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="explorer",
        description="Watch real FlashAttention, speculative decoding and loss scaling on a loaded model. "
        "Without a subcommand: the desktop app.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"explorer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
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


def check_text_arguments(args: argparse.Namespace) -> None:
    """Text given on the command line must be valid Unicode: bytes that are not UTF-8 reach Python as lone
    surrogates, which no tokenizer (and no JSON) can take. File paths are left alone (Linux allows any bytes)."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str) or dest in PATH_DESTS:
                continue
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                flag = "--" + dest.removeprefix("opt_").replace("_", "-")
                raise ExplorerError(
                    f"{flag} is not valid UTF-8 text (invalid byte or lone surrogate at character {exc.start})"
                ) from None


PATH_DESTS = {"model", "draft", "out", "tour", "text", "prompts", "func", "export"}


def _tolerant_output() -> None:
    """Text the terminal's encoding cannot show (PYTHONIOENCODING=ascii) is escaped instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _silence_stdout() -> None:
    """After a closed pipe (``explorer generate --json | head -c 100``): no more writes, no error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def error(message: str) -> int:
    print(f"explorer: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command. Known problems (ExplorerError) are one line and exit 2; so is anything unexpected, with
    a hint to rerun with ``--debug`` for the traceback (the catch-all is a last resort: checks name problems)."""
    _tolerant_output()
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # a usage error, already printed in one line (--help and --version exit as usual)
        if exc.code in (0, None):
            raise
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with interrupts():
            check_text_arguments(args)
            code = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at exit
            return code
    except ExplorerError as exc:
        return error(str(exc))
    except Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a program killed by the closed pipe
    except MemoryError:
        return error("out of memory; try a smaller model, dtype, prompt or --max-new-tokens")
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, the traceback on request
        if args.debug:
            raise
        what = " ".join(str(exc).split())[:300] or "no message"
        return error(f"unexpected {type(exc).__name__}: {what} (rerun with --debug for the traceback)")


if __name__ == "__main__":
    sys.exit(main())
