"""The options of speculative decoding (``explorer speculate``, the speculative view)."""

from __future__ import annotations

from ..models.options import SEED, TEMPERATURE, TOP_K
from ..options import Option, Schema

METHODS = ("chain", "tree", "lookup")
ACCEPT_RULES = ("greedy", "sample", "typical")

SPECULATE = Schema(
    "speculate",
    [
        Option("method", str, "chain", "drafting: a draft-model chain, an EAGLE-2-style dynamic tree, or prompt lookup "
               "(no draft model)", choices=METHODS, label="Drafting"),  # fmt: skip
        Option("accept", str, "greedy", "acceptance: greedy (lossless at temperature 0), sample (speculative "
               "sampling, lossless; needs temperature > 0), typical (Medusa's, not lossless)",
               choices=ACCEPT_RULES, label="Acceptance",
               default_help="greedy at temperature 0, sample above"),  # fmt: skip
        # 3 is the fastest chain on the demo pair (benchmarks/bench_speculative.py).
        Option("gamma", int, 3, "draft chain / lookup length", lo=1, hi=16, label="γ (chain)"),
        Option("tree_depth", int, 5, "tree drafting: depth", lo=1, hi=12, label="Tree depth"),
        Option("tree_topk", int, 4, "tree drafting: children per expanded node", lo=1, hi=10, label="Tree top-k"),
        Option("tree_budget", int, 24, "tree drafting: nodes kept", lo=1, hi=64, label="Tree budget"),
        TEMPERATURE,
        TOP_K,
        Option("max_new", int, 64, "new tokens to decode", lo=1, hi=512, flag="--max-new-tokens", label="New tokens"),
        SEED,
    ],
)

# The view: smaller trees than the command line (readable at 720p) and no top-k.
VIEW = SPECULATE.only(
    [n for n in SPECULATE.options if n != "top_k"], "speculative view", tree_depth=4, tree_topk=3, tree_budget=12,
    max_new=48,
)  # fmt: skip
