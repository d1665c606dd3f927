"""The options of decoding (``explorer generate``, the generate view) and of the demo-pair trainer."""

from __future__ import annotations

from ..options import Option, Schema

# The prompt of the generate, attention and speculative views and of their subcommands: the start of a function the
# demo pair (trained on Python sources) continues well.
DEFAULT_PROMPT = "def fibonacci(n):\n    "

SEED = Option("seed", int, 0, "random seed", lo=0, hi=2**31 - 1, label="Seed")
TEMPERATURE = Option(
    "temperature", float, 0.0, "sampling temperature, 0 = greedy", lo=0.0, hi=5.0, step=0.1,
    special="0 (greedy)", label="Temperature",
)  # fmt: skip
TOP_K = Option("top_k", int, 0, "sample from the k most likely tokens only, 0 = off", lo=0, hi=1000, special="off",
               label="Top-k")  # fmt: skip
DTYPE_NAMES = ("float32", "float16", "bfloat16")

GENERATE = Schema(
    "generate",
    [
        TEMPERATURE,
        TOP_K,
        Option("max_new", int, 48, "new tokens to decode", lo=1, hi=4096, flag="--max-new-tokens", label="New tokens"),
        SEED,
    ],
)

TRAIN_DEMO = Schema(
    "train-demo",
    [
        Option("target_steps", int, 1000, "optimizer steps of the target", lo=1, hi=10**6),
        Option("draft_steps", int, 600, "optimizer steps of the draft (distilled from the target)", lo=1, hi=10**6),
        Option("batch", int, 16, "sequences per step", lo=1, hi=4096),
        Option("seq_len", int, 512, "tokens per sequence", lo=16, hi=512),  # the demo models' context
        SEED,
    ],
)

# `explorer generate` takes the view's options with the view's defaults (one default per option).
GENERATE_CLI = GENERATE
