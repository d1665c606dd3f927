"""What speculative decoding emits and is asked for: the drafted tree, each decision, one record per step, and the
options of a run (checked by the options schema). Plain dataclasses of numpy arrays and ints."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..errors import ExplorerError
from .options import HEAD_METHODS, SPECULATE

__all__ = ["HEAD_METHODS", "Decision", "DraftTree", "SpecOptions", "StepRecord", "TargetOnly"]

TYPICAL_EPSILON = 0.09
TYPICAL_DELTA = 0.3


@dataclass
class DraftTree:
    """The drafted candidates. Node i's parent is ``parent[i]`` (-1: the root, i.e. the last accepted token);
    parents come before children. A chain is the tree whose node i has parent i − 1."""

    tokens: np.ndarray  # int64 [N]
    parent: np.ndarray  # int64 [N]
    depth: np.ndarray  # int64 [N], 1 for the root's children (the root is depth 0)
    q: np.ndarray  # float32 [N]: draft probability of the node's token given its parent (1.0 for lookup)
    texts: list[str]
    # int64 [N]: which head proposed the node (Medusa head k, MTP module k, EAGLE depth k; 0-based);
    # None when a draft model or prompt lookup drafted.
    source: np.ndarray | None = None


@dataclass
class Decision:
    """One accept / reject decision on a candidate node."""

    node: int
    token: int
    p: float  # target probability of the token (under the residual p' for a later sibling)
    q: float  # draft probability (1.0 for a deterministic candidate: q = δ_x)
    ratio: float  # greedy: 1 on an argmax match else 0; sample: min(1, p/q); typical: the threshold
    u: float | None  # the uniform draw (sample rule only)
    accepted: bool
    entropy: float | None = None  # typical: H(p) in nats
    p_top_ids: np.ndarray | None = None  # the target distribution at the parent, top entries (detail only)
    p_top_probs: np.ndarray | None = None
    q_top_ids: np.ndarray | None = None  # the draft distribution at the parent, top entries (detail only)
    q_top_probs: np.ndarray | None = None

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("node", "token", "p", "q", "ratio", "u", "accepted", "entropy")}
        for k in ("p_top_ids", "p_top_probs", "q_top_ids", "q_top_probs"):
            v = getattr(self, k)
            out[k] = None if v is None else v.tolist()
        return out


@dataclass
class StepRecord:
    """Everything one speculative step did (plain data: numpy arrays, ints, lists)."""

    step: int
    context_len: int  # prompt + new tokens before this step (the root is token context_len - 1)
    root_token: int
    tree: DraftTree
    p: np.ndarray  # float32 [N]: target probability of each node's token given its parent
    target_argmax: np.ndarray  # int64 [N + 1]: the target's greedy choice after the root and after each node
    mask: np.ndarray | None  # bool [N + 1, N + 1] tree mask of the verification (None: causal chain)
    position_ids: np.ndarray  # int64 [N + 1]
    decisions: list[Decision]
    accepted: list[int]  # accepted nodes, root to deepest
    rejected: int | None  # the node whose rejection ended the walk (None: the walk reached a leaf)
    residual_top_ids: np.ndarray | None  # the distribution the corrected token was sampled from (sample rule)
    residual_top_probs: np.ndarray | None
    residual_token: int | None
    bonus_token: int | None  # sampled / argmax after a fully accepted path (a leaf)
    new_tokens: list[int]  # accepted drafts + the corrected or bonus token (cut at EOS / max_new_tokens)
    origins: list[str]  # per new token: "accepted", "corrected" or "bonus"
    target_slots_verified: int  # target cache length right after the verification forward
    target_slots_kept: list[int]  # slots >= context_len - 1 kept (compacted to the front, in order)
    draft_slots_kept: list[int]
    draft_calls: int  # draft forwards (the first also feeds whatever the draft cache lacked)
    draft_seconds: float
    verify_seconds: float  # the target forward plus the step's bookkeeping (walk, distributions, cache compaction)
    forward_seconds: float = 0.0  # of verify_seconds, the target forward alone (0 in runs saved before it was timed)
    # The shape the chooser drafted this step with (explorer/speculative/shape.py; None: a fixed shape): depth,
    # topk, budget, label, probe, and ``change`` (step, from, to, reason) when it changed at this step.
    shape: dict | None = None

    def as_dict(self) -> dict:
        t = self.tree
        out = {
            "step": self.step,
            "context_len": self.context_len,
            "root_token": self.root_token,
            "tree": {
                "tokens": t.tokens.tolist(),
                "texts": t.texts,
                "parent": t.parent.tolist(),
                "depth": t.depth.tolist(),
                "q": t.q.tolist(),
                "source": None if t.source is None else t.source.tolist(),
            },
            "p": self.p.tolist(),
            "target_argmax": self.target_argmax.tolist(),
            "mask": None if self.mask is None else self.mask.astype(int).tolist(),
            "position_ids": self.position_ids.tolist(),
            "decisions": [d.as_dict() for d in self.decisions],
            "accepted": self.accepted,
            "rejected": self.rejected,
            "residual_top": None
            if self.residual_top_ids is None
            else [[int(i), float(p)] for i, p in zip(self.residual_top_ids, self.residual_top_probs, strict=True)],
            "residual_token": self.residual_token,
            "bonus_token": self.bonus_token,
            "new_tokens": self.new_tokens,
            "origins": self.origins,
            "target_slots_verified": self.target_slots_verified,
            "target_slots_kept": self.target_slots_kept,
            "draft_slots_kept": self.draft_slots_kept,
            "draft_calls": self.draft_calls,
            "draft_seconds": self.draft_seconds,
            "verify_seconds": self.verify_seconds,
            "forward_seconds": self.forward_seconds,
        }
        if self.shape is not None:  # chosen shapes only: fixed-shape exports keep their keys
            out["shape"] = self.shape
        return out


@dataclass
class SpecOptions:
    method: str = "chain"
    accept: str = "greedy"
    gamma: int = 3  # chain / lookup length (3 is the fastest on the demo pair: benchmarks/bench_speculative.py)
    temperature: float = 0.0
    top_k: int | None = None
    seed: int = 0
    tree_depth: int = 5
    tree_topk: int = 4
    tree_budget: int = 24
    lookup_ngram: int = 3  # longest n-gram tried by prompt lookup
    medusa_tree: str = ""  # Medusa's static tree ("0,1,0.0,..."); "" = the one tuned with the heads
    typical_epsilon: float = TYPICAL_EPSILON
    typical_delta: float = TYPICAL_DELTA
    stop_at_eos: bool = True
    detail: bool = True  # token texts and top-10 distributions in the records (off for benchmarks)

    @classmethod
    def from_values(cls, values: dict[str, Any], **overrides: Any) -> SpecOptions:
        """The options named by options-schema values (``speculate``'s names; others, e.g. ``max_new``, are not
        options of the engine): a top-k of 0 or none means none."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in values.items() if k in names}
        kw["top_k"] = values.get("top_k") or None
        kw.update(overrides)
        return cls(**kw)

    def check(self, has_draft: bool, heads_kind: str | None = None) -> None:
        """The options schema's checks (one message format with the CLI and the view), then the combinations.
        ``heads_kind``: the kind of the loaded draft heads (None: none loaded)."""
        names = ("method", "accept", "gamma", "tree_depth", "tree_topk", "tree_budget", "temperature", "seed",
                 "medusa_tree")  # fmt: skip
        values = {n: getattr(self, n) for n in names}
        values["top_k"] = self.top_k or 0
        SPECULATE.check(values)
        if self.method in HEAD_METHODS:  # (prompt lookup takes any heads as its fallback)
            if heads_kind != self.method:
                have = f"{heads_kind} heads are loaded" if heads_kind else "no heads are loaded"
                raise ExplorerError(f"{self.method} drafting needs {self.method} heads (--heads DIR); {have}")
        elif self.method != "lookup" and not has_draft:
            raise ExplorerError(f"{self.method} drafting needs a draft model (or use prompt lookup)")
        if self.accept == "sample" and self.temperature <= 0:
            raise ExplorerError("--accept sample needs --temperature > 0 (at temperature 0 use --accept greedy)")

    @property
    def depth(self) -> int:
        if self.method == "medusa":
            return 64  # the tree's own depth (at most the number of heads)
        return self.tree_depth if self.method in ("tree", "eagle") else self.gamma

    @property
    def max_nodes(self) -> int:
        return self.tree_budget if self.method in ("tree", "eagle") else self.gamma


@dataclass
class TargetOnly:
    """The target alone on the same prompt and decoding settings: the baseline for speed and greedy equality."""

    tokens: list[int]
    seconds: float

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict | None) -> TargetOnly | None:
        """None for a missing baseline (``None``, ``{}`` or no tokens: runs stored without one)."""
        if not d or d.get("tokens") is None:
            return None
        return cls(list(d["tokens"]), d.get("seconds", 0.0))
