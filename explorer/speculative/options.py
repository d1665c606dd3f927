"""The options of speculative decoding (``explorer speculate``, the speculative view)."""

from __future__ import annotations

from ..models.options import SEED, TEMPERATURE, TOP_K
from ..options import Option, Schema

METHODS = ("chain", "tree", "lookup", "medusa", "eagle", "mtp")
# "auto": lookup first with the heads expected to pay most, else chain or lookup (shape.py, choose_method)
METHOD_CHOICES = ("auto", *METHODS)
HEAD_METHODS = ("medusa", "eagle", "mtp")  # drafted by heads on the target itself (explorer/speculative/heads.py)
ACCEPT_RULES = ("greedy", "sample", "typical")



def _tree_problem(text: str) -> str | None:
    """Why a Medusa tree spelling is malformed (paths of ranks joined by dots, separated by commas), or None."""
    if text == "tuned":
        return None
    paths = set()
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            path = tuple(int(r) for r in part.strip().split("."))
        except ValueError:
            return f"must be paths of ranks joined by dots, separated by commas (got {part.strip()!r})"
        if min(path) < 0 or max(path) > 9:
            return f"ranks must be in 0..9 (got {part.strip()!r})"
        if len(path) > 1 and path[:-1] not in paths:
            return f"lists {part.strip()!r} before its parent"
        paths.add(path)
    return None


SPECULATE = Schema(
    "speculate",
    [
        Option("method", str, "auto", "drafting; auto: lookup first, else the heads that pay most; without heads "
               "chain or lookup",
               choices=METHOD_CHOICES, label="Drafting",
               default_help="lookup with --lookup, the heads' kind with --heads, tree with a tree option, else "
               "auto"),  # fmt: skip
        Option("accept", str, "greedy", "acceptance: greedy (lossless at temperature 0), sample (speculative "
               "sampling, lossless, temperature > 0), typical (Medusa's, not lossless)",
               choices=ACCEPT_RULES, label="Acceptance",
               default_help="greedy at temperature 0, sample above"),  # fmt: skip
        # 0 = auto (explorer/speculative/shape.py): the shape expected to yield the most tokens per second from this
        # machine's measured verification costs and the run's acceptance; a number fixes that dimension.
        Option("gamma", int, 0, "chain / lookup length, 0 = auto", lo=0,
               hi=16, label="γ (chain)", special="auto"),  # fmt: skip
        Option("tree_depth", int, 0, "tree depth, 0 = auto", lo=0, hi=12, label="Tree depth",
               special="auto"),  # fmt: skip
        Option("tree_topk", int, 0, "tree width, 0 = auto", lo=0, hi=10,
               label="Tree top-k", special="auto"),  # fmt: skip
        Option("tree_budget", int, 0, "tree nodes, 0 = auto", lo=0, hi=64, label="Tree budget",
               special="auto"),  # fmt: skip
        Option("medusa_tree", str, "", "medusa: a static tree, paths of per-head ranks (e.g. '0,1,0.0'); "
               "'tuned': the heads' own", label="Medusa tree",
               check_fn=_tree_problem, panel=False, default_help="auto"),  # fmt: skip
        TEMPERATURE,
        TOP_K,
        Option("max_new", int, 48, "new tokens to decode", lo=1, hi=512, flag="--max-new-tokens", label="New tokens"),
        SEED,
    ],
)

# The view: the command line's options and defaults (one default per option), without top-k and the Medusa tree.
VIEW = SPECULATE.only([n for n in SPECULATE.options if n not in ("top_k", "medusa_tree")], "speculative view")
# The prompt-set view: the speculative view's options, each prompt of the set decoding fewer new tokens.
PROMPT_SET_VIEW = VIEW.only(list(VIEW.options), "prompt-set view", max_new=64)

HEAD_KINDS = ("medusa", "eagle", "mtp")

TRAIN_HEADS = Schema(
    "train-heads",
    [
        Option("kind", str, "medusa", "which heads: Medusa (K heads on the last feature), EAGLE (one decoder layer on "
               "its own features), MTP (K sequential modules)", choices=HEAD_KINDS),  # fmt: skip
        Option("heads", int, 4, "Medusa heads / MTP modules (EAGLE has one layer)", lo=1, hi=8),
        Option("intermediate", int, 0, "MLP width of EAGLE's layer / each MTP module (0 = the target's for EAGLE, "
               "twice the hidden size for MTP; narrower drafts faster on a small target)", lo=0, hi=10**6),  # fmt: skip
        Option("steps", int, 600, "optimizer steps", lo=1, hi=10**6),
        Option("sequences", int, 1536, "self-distilled sequences (text window + the target's greedy continuation)",
               lo=16, hi=10**6),  # fmt: skip
        Option("continuation", int, 64, "greedy tokens the target adds to each window", lo=4, hi=1024),
        Option("batch", int, 512, "positions per optimizer step (EAGLE: tokens, in whole sequences)", lo=8, hi=65536),
        Option("lr", float, 1e-3, "AdamW learning rate (cosine decay)", lo=0.0, hi=1.0, lo_open=True),
        Option("draft_vocab", int, 0, "draft from only the N tokens the target emits most often in the self-distilled "
               "data (FR-Spec: a smaller LM-head product per drafted token; 0 = the whole vocabulary)",
               lo=0, hi=10**7),  # fmt: skip
        Option("draft_loss", bool, False, "with --draft-vocab, learn the target's distribution restricted to the draft "
               "vocabulary (renormalized), which is all the heads draft from: the LM-head products of training shrink "
               "by the vocabulary's size over N, what makes a 49k-token model's heads trainable on a CPU"),  # fmt: skip
        SEED,
    ],
)
