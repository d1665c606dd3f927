"""The options of data-parallel training on real ranks (``explorer ddp``, the ddp view)."""

from __future__ import annotations

from ..models.options import SEED
from ..options import Option, Schema

BACKEND_NAMES = ("gloo", "nccl")
MAX_RANKS = 8

DDP = Schema(
    "ddp",
    [
        Option(
            "ranks", int, 4, "data-parallel ranks: real processes on this machine", lo=2, hi=MAX_RANKS, label="Ranks"
        ),  # fmt: skip
        Option("steps", int, 2, "training steps", lo=1, hi=1000, label="Steps"),
        Option(
            "train_layers",
            int,
            2,
            "train only the last N decoder layers and the final norm (the rest frozen: "
            "not in DDP's buckets); 0 = the whole model",
            lo=0,
            hi=1024,
            special="all",
            label="Train last layers",
        ),  # fmt: skip
        Option(
            "bucket_mb",
            float,
            1.0,
            "DDP's bucket_cap_mb: gradient bytes per all-reduce bucket (0: torch's "
            "default, 25 MiB with a first bucket of 1 MiB)",
            lo=0.0,
            hi=1024.0,
            decimals=2,
            step=0.25,
            special="torch default",
            unit="MiB",
            label="Bucket cap",
        ),  # fmt: skip
        Option(
            "ring_bucket",
            int,
            0,
            "the bucket the ring all-reduce is shown on (DDP's index: 0 is the first "
            "to be reduced, the last layers' gradients)",
            lo=0,
            hi=10000,
            label="Ring on bucket",
        ),  # fmt: skip
        Option(
            "backend",
            str,
            "gloo",
            "process-group backend: gloo (CPU) or nccl (one GPU per rank)",
            choices=BACKEND_NAMES,
            label="Backend",
        ),  # fmt: skip
        Option(
            "batch",
            int,
            8,
            "sequences per step, split between the ranks (the global batch)",
            lo=1,
            hi=4096,
            label="Global batch",
        ),  # fmt: skip
        Option("seq_len", int, 32, "tokens per sequence", lo=2, hi=65536, panel=False),
        Option("lr", float, 1e-2, "SGD learning rate", lo=0.0, hi=10.0, panel=False),
        SEED,
        Option(
            "check",
            bool,
            True,
            "rank 0 also runs one process on the whole batch each step, to compare its gradients with DDP's",
            label="One-process check",
        ),  # fmt: skip
        Option(
            "cost",
            bool,
            True,
            "after training, time all-reduces of several sizes on these ranks and fit the α–β model to them",
            label="Measure cost model",
        ),  # fmt: skip
        Option(
            "port", int, 0, "loopback port of the process group's store (0: a free one)", lo=0, hi=65535, panel=False
        ),  # fmt: skip
        Option(
            "timeout",
            float,
            60.0,
            "a rank silent this long counts as hung and stops the run",
            lo=1.0,
            hi=3600.0,
            unit="s",
            panel=False,
        ),  # fmt: skip
    ],
)

# The view: four ranks, so that the ring has three reduce-scatter and three all-gather steps to watch.
VIEW = DDP.only(["ranks", "steps", "train_layers", "bucket_mb", "ring_bucket", "batch", "seed", "check", "cost"])
