"""The options of an autograd run (``explorer autograd``, the autograd view)."""

from __future__ import annotations

from ..models.options import DTYPE_NAMES, SEED
from ..options import Option, Schema

SCOPES = ("layer", "model")
CARDS = ("node", "in-place trap", "nn vs functional")  # the view's tabs beside the graph

AUTOGRAD = Schema(
    "autograd",
    [
        Option(
            "scope",
            str,
            "layer",
            "what the forward runs: one decoder layer (its output through the final norm "
            "and LM head to the loss) or the whole model",
            choices=SCOPES,
            label="Graph of",
        ),  # fmt: skip
        Option("layer", int, 0, "the decoder layer of --scope layer, counted from 0", lo=0, hi=1023, label="Layer"),
        Option("batch", int, 2, "sequences in the batch", lo=1, hi=64, label="Batch"),
        Option("seq_len", int, 16, "tokens per sequence", lo=2, hi=4096, label="Tokens"),
        Option(
            "dtype",
            str,
            "float32",
            "dtype of the trainable copy the forward runs in",
            choices=DTYPE_NAMES,
            label="Dtype",
        ),  # fmt: skip
        SEED,
        Option(
            "card",
            str,
            CARDS[0],
            "the card beside the graph: the node shown, the in-place trap run live, or nn against functional",
            choices=CARDS,
            display=True,
            cli=False,
            label="Card",
        ),  # fmt: skip
    ],
)

VIEW = AUTOGRAD.only(["scope", "layer", "batch", "seq_len", "dtype", "seed", "card"], "autograd view")
