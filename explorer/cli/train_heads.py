"""``explorer train-heads``: train Medusa, EAGLE or MTP draft heads on a frozen target by self-distillation."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..errors import ExplorerError
from ..speculative.options import TRAIN_HEADS
from .common import check_device


def add_parser(sub) -> None:
    p = sub.add_parser("train-heads", help="train draft heads (medusa, eagle, mtp) on a frozen target, self-distilled")
    p.add_argument("--model", metavar="DIR", help="the target (default: the demo target)")
    p.add_argument("--out", required=True, metavar="DIR", help="the heads directory to write")
    p.add_argument("--text", nargs="+", metavar="FILE", help="text files to take prompts from (default: the "
                   "Python standard library's sources)")  # fmt: skip
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    TRAIN_HEADS.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..models.checkpoint import default_model_dirs, load_model
    from ..speculative import train_heads

    o = TRAIN_HEADS.from_args(args)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ExplorerError(f"--out {out} exists and is not a directory")
    files = None
    if args.text:
        files = [Path(f).expanduser() for f in args.text]
        for f in files:
            if not f.is_file():
                raise ExplorerError(f"text file not found: {f}")
    device = check_device(args.device) or "cpu"
    target = load_model(args.model or default_model_dirs()["target"], dtype="float32", device=device)
    command = "explorer train-heads " + shlex.join(sys.argv[2:])
    train_heads.seed_everything(o["seed"])
    with torch.enable_grad():
        module, card = train_heads.train(
            target, o["kind"], o["heads"], o["steps"], files, o["seed"], sequences=o["sequences"],
            gen=o["continuation"], lr=o["lr"], batch=o["batch"], draft_vocab=o["draft_vocab"],
            draft_loss=o["draft_loss"], intermediate=o["intermediate"] or None, log=lambda s: print(s, file=sys.stderr),
        )  # fmt: skip
    path = train_heads.write_heads(out, o["kind"], module, target, card, o["heads"], command)
    acc = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(card["top1"], card["top5"], strict=True))
    print(f"wrote {o['kind']} heads to {path}; held-out top-1/top-5 per head: {acc}", file=sys.stderr)
    return 0
