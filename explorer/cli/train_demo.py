"""``explorer train-demo``: retrain the shipped demo target/draft pair."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..models.options import TRAIN_DEMO

# As the shipped pair's training.json measured it (total: 41.9 min wall, 76.2 CPU-minutes); docs/commands.md says
# the same, and tests/test_options.py holds both to that file.
TRAINING_TIME = "about 42 min, 76 CPU-minutes, on 2 cores"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-demo", help=f"train the shipped demo target/draft pair ({TRAINING_TIME})"
    )
    p.add_argument("--out", default="assets/models", metavar="DIR", help="where the two model directories go "
                   "(default: assets/models)")  # fmt: skip
    TRAIN_DEMO.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import train_demo

    o = TRAIN_DEMO.from_args(args)
    command = "explorer train-demo " + shlex.join(sys.argv[2:])
    train_demo.run(Path(args.out), o["target_steps"], o["draft_steps"], o["batch"], o["seq_len"], o["seed"], command)
    return 0
