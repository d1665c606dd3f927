"""The draft shape that pays on this machine (Qt-free): how deep, how wide and how many nodes a step drafts, chosen
to maximise expected tokens per second from two measured things (Sequoia's hardware-aware sizing, EAGLE-2's
confidence-driven trees):

- **the verification-cost curve**: the seconds of one target forward over the root and n nodes, chain and tree
  (explorer/speculative/costs.py), for the loaded target, device, dtype, thread count and torch version; measured
  once (about a second) and cached on disk as JSON (:func:`curve_for`). On a GPU it is nearly flat (verifying 16
  tokens costs about one step) and a wide, deep tree pays; on two CPU cores it climbs, and a short chain does.
- **acceptance per depth and per sibling rank** (:class:`Acceptance`): the probability that the rank-r candidate
  under an accepted node at depth d is accepted, estimated from the draft's own confidence (the top-k of each
  drafted distribution; a calibrated draft is accepted with its probability) and from the run's decisions, which
  also calibrate the confidence (online, every step).

A shape's expected tokens per step is 1 + the sum over its nodes of the probability that the node's path is
accepted (greedy: siblings exclude each other); its time is the curve at its node count (tree or chain) plus the
measured drafting per draft forward times the forwards it needs plus the step's bookkeeping. The chooser keeps
the shape with the most tokens per second, switches only for a clear gain, and falls back to plain decoding (saying
so once) when no shape is expected to beat the target alone; it then probes one cheap draft now and then.
Every shape is lossless: only how much is drafted changes, never how a draft is accepted.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text_atomic
from ..errors import ExplorerError
from .costs import APP_CURVE_SIZES, _binary_tree_mask
from .heads import format_choices
from .records import SpecOptions

RANKS = 4  # sibling ranks modelled (top-4 children at most)
MAX_DEPTH = 8
MAX_TOPK = 4
MAX_NODES = 32  # the curve's largest size
CHAIN_METHODS = ("chain", "mtp", "lookup")
TREE_METHODS = ("tree", "eagle")
CURVE_CONTEXT = 64  # the prefix the cached curve is measured after
CURVE_VERSION = 3  # 2: shape from ratios to the decode step timed beside each size; 3: 3 rows as 4, one mask
SWITCH_GAIN = 1.08  # a new shape must be expected this much faster than the current one
PAYS_MARGIN = 1.02  # speculation must be expected this much faster than the target alone
RECHOOSE_EVERY = 8  # steps between choices (after steps 1, 2 and 4, when the estimates move most); each choice
RECHOOSE_MAX = 32  # ... that keeps the shape doubles the wait, up to this (an EAGLE choice costs 0.7 ms in a run)
FALLBACK_AFTER = 3  # decisions at depth 1 before the chooser may stop drafting ...
FALLBACK_SURE = 8  # ... or this many while the cheapest shape is expected within FALLBACK_NEAR of plain decoding
FALLBACK_NEAR = 0.95  # (a loss that small is not worth a fallback on thin evidence: Medusa's head 0, accepted a
#   third of the time, often missed its first 4 drafts after a prompt cut mid-word and fell back where it paid 1.06x)
RECHOOSE_AFTER_MISSES = 2  # ... or sooner, after this many steps that accepted nothing and twice the misses the
#   choice expected (a prompt harder than the last one: MTP had kept its chain of 3 for 12 steps at a fifth of the
#   acceptance that chose it; a chain of 1 accepted 60% of the time misses every 2.5 steps and is no news)
MISSES_OVER_EXPECTED = 2.0  # (the "twice")
PROBE_FIRST = 2  # plain steps before the first one-token probe after a fallback; each rejected probe doubles
PROBE_MAX_GAP = 32  # ... the wait before the next, up to this (an accepted one keeps it and is weighed at once)
CONFIDENCE_READINGS = 16  # readings at depth 1 after which a draft's confidence is read every 4th step only (its
#   top-k costs 0.1 ms, 2-3% of a demo step, and the mean no longer moves)
EXPLORE_EVERY = 6  # every 6th step drafts one level deeper than chosen: its acceptance and cost, measured
EXPLORE_WITHIN = 0.95  # explore a level deeper only while it is expected within 5% of the chosen shape
RECALL_CAP = 4  # decisions per depth and rank a run keeps from the last one (see ShapeChooser.recall)
KNOWN_DECISIONS = 6  # decisions at a depth after which its acceptance is known well enough to explore less
CONFIDENCE_WEIGHT = 2.0  # readings the prior counts for in the mean draft confidence
PRIOR_WEIGHT = 4.0  # pseudo-decisions the confidence estimate counts for against the run's own decisions
DECISIONS_KEEP = 0.95  # each plain step keeps this share of the decisions counted so far (they fade)
WINDOW = 9  # steps whose fastest timings the chooser uses (as the curve: a busy machine only ever adds time)
STALE_AFTER = 24  # steps after which a node count's forwards no longer stand for it (the machine's load moves)
NEUTRAL_PRIOR = (0.6, 0.1, 0.05, 0.03)  # before any draft was seen and without a model card: per rank


@dataclass(frozen=True)
class Shape:
    """What one step drafts: ``depth`` levels (0: none, plain decoding), ``topk`` children per expanded node
    (1: a chain), ``budget`` nodes verified; Medusa's static tree as rank ``paths``."""

    depth: int
    topk: int = 1
    budget: int = 0
    paths: tuple[tuple[int, ...], ...] | None = None

    @property
    def nodes(self) -> int:
        return len(self.paths) if self.paths is not None else self.budget

    @property
    def tree(self) -> bool:
        """Verified with a tree mask (more than one node at some depth)."""
        if self.paths is not None:
            return len(self.paths) > self.depth
        return self.topk > 1 and self.budget > self.depth

    def label(self) -> str:
        if self.depth == 0:
            return "no speculation"
        if self.paths is not None:
            return f"tree of {self.nodes} nodes, depth {self.depth}" if self.tree else f"chain of {self.depth}"
        if self.topk == 1 or self.budget <= self.depth:
            return f"chain of {min(self.depth, self.budget)}"
        return f"tree depth {self.depth}, top-{self.topk}, {self.budget} nodes"

    def short(self) -> str:
        """The label in a few characters, for tight places: "none", "chain 3", "d4·k2·8" (depth, top-k, nodes)."""
        label = self.label()
        if label.startswith("tree depth"):
            return f"d{self.depth}·k{self.topk}·{self.budget}"
        if label.startswith("tree of"):
            return f"d{self.depth}·{self.nodes} nodes"
        return "none" if self.depth == 0 else label

    def as_dict(self) -> dict:
        """A copy of the shape's dict, made once per shape: every step's record carries one (spelling a Medusa
        tree's paths each step cost a run 0.8 ms, a third of a percent of it)."""
        made = self.__dict__.get("_as_dict")
        if made is None:
            made = {"depth": self.depth, "topk": self.topk, "budget": self.nodes, "label": self.label(),
                    "short": self.short()}  # fmt: skip
            if self.paths is not None:
                made["medusa_tree"] = format_choices(list(self.paths))
            object.__setattr__(self, "_as_dict", made)  # (not a field: equality and hashing ignore it)
        return dict(made)

    def options(self, base: SpecOptions) -> SpecOptions:
        """``base`` with this shape's numbers (what the drafters read)."""
        if self.paths is not None:
            return replace(base, medusa_tree=format_choices(list(self.paths)) if self.paths else "0")
        if base.method in TREE_METHODS:
            return replace(base, tree_depth=max(self.depth, 1), tree_topk=self.topk, tree_budget=max(self.budget, 1))
        return replace(base, gamma=max(self.depth, 1))


NO_SPECULATION = Shape(0, 1, 0)


def chain_shape(depth: int) -> Shape:
    return Shape(depth, 1, depth)


# ---------------------------------------------------------------------------------------------- the cost curve
def cache_file() -> Path:
    from ..models.smollm import cache_dir

    return cache_dir() / "verify-costs.json"


def curve_key(target) -> str:
    """Model, device, dtype, threads and torch version: what the curve depends on."""
    return (f"{target.path}|{target.device}|{target.dtype}|threads={torch.get_num_threads()}|"
            f"torch={torch.__version__}")  # fmt: skip


_CURVES: dict[str, dict] = {}  # this process's curves by key (read or measured once)


def _read_cache(path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CURVE_VERSION or not isinstance(data.get("curves"), dict):
        return {}
    return data["curves"]


@torch.inference_mode()
def measure_curve(target, budget_s: float = 1.5, rounds: int = 9) -> dict:
    """One target forward over [root, n nodes] after a 64-token prefix, chain (causal) and tree (binary tree mask),
    n in APP_CURVE_SIZES, each timed right after a decode step (n = 0): rounds of every size in turn until
    ``budget_s`` is spent (at least 4, at most ``rounds``). The curve's shape is each size's median ratio to the
    decode step timed beside it (a busy machine slows both alike: the ratio holds where single timings don't),
    its level the fastest decode step (a busy machine only ever adds time); then the lower envelope is taken
    (verifying more tokens never costs less). About a second and a half on the demo target on two idle cores."""
    model, dev = target.model, target.model.lm_head.weight.device
    sizes = list(APP_CURVE_SIZES)
    cache = model.new_cache(CURVE_CONTEXT + max(sizes) + 2)
    model(torch.zeros(1, CURVE_CONTEXT, dtype=torch.long, device=dev), cache=cache, last_only=True)
    ids = torch.zeros(1, max(sizes) + 1, dtype=torch.long, device=dev)
    trees = {n: _tree_inputs(n, dev) for n in sizes if n > 1}

    def timed(n: int, tree: bool) -> float:
        kw = trees[n] if tree and n > 1 else {}
        t0 = time.perf_counter()
        model(ids[:, : n + 1], cache=cache, **kw)
        seconds = time.perf_counter() - t0
        cache.truncate(CURVE_CONTEXT)
        return seconds

    timed(0, False), timed(4, False), timed(4, True)  # warm-up
    t0 = time.perf_counter()
    keys = [(n, t) for n in sizes for t in (False, True)]
    ratios: dict = {key: [] for key in keys}
    base = math.inf
    done = 0
    while done < rounds and (done < 4 or time.perf_counter() - t0 < budget_s):
        for key in keys:
            decode = timed(0, False)
            ratios[key].append(timed(*key) / decode)
            base = min(base, decode)
        done += 1
    chain = base * np.asarray([np.median(ratios[(n, False)]) for n in sizes])
    tree = base * np.asarray([np.median(ratios[(n, True)]) for n in sizes])
    chain = np.minimum.accumulate(chain[::-1])[::-1]
    tree = np.maximum(np.minimum.accumulate(tree[::-1])[::-1], chain)  # a tree mask never makes it cheaper
    return {
        "sizes": sizes,
        "base_seconds": min(base, float(chain[0])),
        "chain_seconds": chain.tolist(),
        "tree_seconds": tree.tolist(),
        "rounds": done,
        "measured_seconds": time.perf_counter() - t0,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _tree_inputs(n: int, dev) -> dict:
    """The binary tree's mask and position ids (by depth) over [root, n nodes] after the prefix."""
    depth = torch.zeros(n + 1, dtype=torch.long)
    for i in range(1, n):
        depth[i + 1] = depth[(i - 1) // 2 + 1] + 1
    depth[1:] += 1
    return {"mask": _binary_tree_mask(n).to(dev), "position_ids": (CURVE_CONTEXT + depth).to(dev)}


def curve_for(target, remeasure: bool = False) -> dict:
    """This machine's verification-cost curve for ``target``: from this process, else the disk cache
    (``$EXPLORER_CACHE/verify-costs.json``), else measured and written there (atomically, JSON);
    ``remeasure`` measures it again. The returned curve carries its ``key`` and whether it was ``cached``."""
    key = curve_key(target)
    if not remeasure and key in _CURVES:
        return _CURVES[key]
    path = cache_file()
    stored = _read_cache(path)
    if not remeasure and isinstance(stored.get(key), dict) and "base_seconds" in stored[key]:
        curve = {**stored[key], "key": key, "cached": True}
    else:
        curve = measure_curve(target)
        stored = _read_cache(path)  # another process may have written meanwhile
        stored[key] = curve
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps({"version": CURVE_VERSION, "curves": stored}, indent=1))
        except (OSError, ExplorerError) as exc:  # a read-only cache: the curve still serves this process
            curve = {**curve, "cache_error": str(exc)}
        curve = {**curve, "key": key, "cached": False}
    _CURVES[key] = curve
    return curve


def flat_curve(base_seconds: float, growth: float = 0.0) -> dict:
    """A synthetic curve: one forward over n tokens costs base · (1 + growth · n) (growth 0: a GPU's flat curve)."""
    sizes = list(APP_CURVE_SIZES)
    seconds = [base_seconds * (1 + growth * n) for n in sizes]
    return {"sizes": sizes, "base_seconds": base_seconds, "chain_seconds": seconds, "tree_seconds": list(seconds)}


# ---------------------------------------------------------------------------------------------- step costs
@dataclass
class Costs:
    """What a step costs besides acceptance: the curve, seconds per draft forward (chain-like and tree steps),
    a fixed drafting cost per step (prompt lookup's search), and the step's bookkeeping. The run's own verification
    forwards correct the curve: ``observed`` holds the fastest of the recent forwards per node count (used where
    there are three within STALE_AFTER steps), and their difference from the curve shifts it elsewhere; every
    timing is a fastest one, as the curve's, so that they compare in one unit."""

    curve: dict
    draft_forward: float  # seconds per draft forward of a chain-like step (one node per forward)
    tree_forward: float  # per draft forward of a tree step (several nodes per forward, masked)
    draft_fixed: float = 0.0
    overhead: float = 0.0  # bookkeeping seconds per step at ``overhead_nodes`` nodes
    overhead_nodes: float = 1.0
    plain_overhead: float = 0.0  # a plain step's own (its record: no walk, no distributions, no compaction)
    observed: dict = field(default_factory=dict)  # (nodes, tree) -> fastest seconds of the run's recent forwards
    _tables: dict = field(default_factory=dict, repr=False)  # tree -> (observed it was built from, seconds by n)

    @property
    def base(self) -> float:
        return float(self.verify(0, False))

    def offset(self, nodes=0):
        """How many seconds the run's own forwards take beyond the curve, at ``nodes`` (int or array): the
        difference at the node counts seen, interpolated between them and held beyond; 0 before any. A difference,
        not a ratio: in a run the target's forward follows the drafter's, which has pushed the target's weights out
        of the caches, and streaming them back costs about the same whatever the node count (EAGLE's fixed chains
        of 1 / 2 / 3 / 4 on the demo target: 1.30 / 1.23 / 1.22 / 1.09 ms over a curve of 2.9-4.2 ms, ratios 1.45 /
        1.34 / 1.34 / 1.26). Scaled by its ratio at 1 node, the curve had weighed a chain of 3's forward 8% slower
        than it ran, and EAGLE, started at a chain of 1, never tried the chain of 3 that paid 12% more."""
        if not self.observed:
            return np.zeros(np.shape(nodes)) if np.ndim(nodes) else 0.0
        seen = sorted((n, s - float(self.curve_seconds(n, t))) for (n, t), s in self.observed.items())
        return np.interp(nodes, [n for n, _ in seen], [d for _, d in seen])

    def curve_seconds(self, nodes, tree: bool) -> np.ndarray:
        c = self.curve
        xs = np.concatenate([[0], c["sizes"]])
        ys = np.concatenate([[c["base_seconds"]], c["tree_seconds" if tree else "chain_seconds"]])
        return np.interp(np.asarray(nodes, dtype=float), xs, ys)

    def verify(self, nodes, tree: bool) -> np.ndarray:
        """Seconds of verifying ``nodes`` (int or int array, 0..MAX_NODES): the run's own where it has them."""
        key = tuple(sorted(self.observed.items()))
        built = self._tables.get(tree)
        if built is None or built[0] != key:
            sizes = np.arange(MAX_NODES + 1)
            table = self.curve_seconds(sizes, tree) + self.offset(sizes)
            for (n, t), seconds in self.observed.items():
                if n <= MAX_NODES and t == (tree and n > 1):
                    table[n] = seconds
            built = self._tables[tree] = (key, table)
        return built[1][nodes]

    def bookkeeping(self, nodes) -> np.ndarray:
        return self.overhead * (1 + 0.05 * np.asarray(nodes, dtype=float)) / (1 + 0.05 * self.overhead_nodes)

    def step(self, nodes, forwards: int, tree: bool) -> np.ndarray:
        """Seconds of a step verifying ``nodes`` (array or int) after ``forwards`` draft forwards."""
        per = self.tree_forward if tree else self.draft_forward
        return self.verify(nodes, tree) + self.draft_fixed + forwards * per + self.bookkeeping(nodes)


def draft_forwards(method: str, shape: Shape) -> int:
    if shape.depth == 0 or method == "lookup":
        return 0
    return 1 if method == "medusa" else shape.depth


# ---------------------------------------------------------------------------------------------- acceptance
class Acceptance:
    """Acceptance per depth (1..MAX_DEPTH) and sibling rank (0..RANKS − 1) under an accepted parent: the draft's
    confidence (mean top-r probability of its distributions at that depth), calibrated by the run's decisions,
    blended with the decisions' own rate where there are some."""

    def __init__(self, prior: np.ndarray, measured: bool = False):
        self.prior = np.asarray(prior, dtype=float)  # [MAX_DEPTH, RANKS]: before the draft's confidence is seen
        self.measured = measured  # the prior is the heads' held-out acceptance (their card), not a guess
        self.conf_sum = np.zeros((MAX_DEPTH, RANKS))
        self.conf_n = np.zeros((MAX_DEPTH, RANKS))
        self.tried = np.zeros((MAX_DEPTH, RANKS))
        self.accepted = np.zeros((MAX_DEPTH, RANKS))
        self.decided = 0  # decisions at depth 1 observed here (neither recalled nor faded)

    def confidence(self) -> np.ndarray:
        """Mean draft confidence per cell; depths never drafted take the deepest drafted one's (else the prior)."""
        seen = self.conf_n > 0
        # shrunk toward the prior by CONFIDENCE_WEIGHT readings: one draft's confidence alone had set every
        # depth (the demo draft model's first top-1 of 0.2 on prompts where it was accepted 0.44-0.71 of the time)
        conf = (self.conf_sum + CONFIDENCE_WEIGHT * self.prior) / (self.conf_n + CONFIDENCE_WEIGHT)
        deepest = np.flatnonzero(seen[:, 0])
        if len(deepest):
            d = deepest[-1]
            conf[d + 1 :] = np.where(seen[d + 1 :], conf[d + 1 :], conf[d])
        return conf

    def table(self) -> np.ndarray:
        """The acceptance estimate [MAX_DEPTH, RANKS]: a prior of PRIOR_WEIGHT decisions plus the decisions. The
        prior is κ · confidence, κ = accepted / expected over all decided cells (the draft's calibration), except
        at depths deeper than a well-decided one (4 decisions or more), which borrow its rate: acceptance per
        position roughly constant with depth, as Leviathan's α (a draft's confidence may fall with depth where its
        acceptance does not: EAGLE running on its own features). Each depth's ranks sum to at most 1 (siblings
        exclude each other). Heads with a card start from it instead of their confidence (measured on held-out
        text, it says how acceptance goes with depth better than the confidence of heads running on their own
        predictions), and its deeper depths scale by the run's rate over the card's at a well-decided depth."""
        if self.measured:
            prior = self.prior.copy()
        else:
            conf = self.confidence()
            expected = float((self.tried * conf).sum())
            # κ counts the confidence as PRIOR_WEIGHT decisions too: with 1 a first rejected node scaled every
            # depth by 0.59 (then the blend below counted that rejection again), and a draft model that paid 1.1x
            # on the next prompts fell to plain decoding after its first step
            kappa = (self.accepted.sum() + PRIOR_WEIGHT) / (expected + PRIOR_WEIGHT) if self.tried.sum() else 1.0
            kappa = float(np.clip(kappa, 0.05, 4.0))
            prior = np.clip(kappa * conf, 0, 1)
        for r in range(RANKS):
            rate = None
            for d in range(MAX_DEPTH):
                if self.tried[d, r] >= 4:
                    rate = self.accepted[d, r] / self.tried[d, r]
                    ratio = rate / max(self.prior[d, r], 1e-3)
                elif rate is not None:
                    prior[d, r] = min(self.prior[d, r] * ratio, 1.0) if self.measured else rate
        est = (self.accepted + PRIOR_WEIGHT * prior) / (self.tried + PRIOR_WEIGHT)
        total = est.sum(axis=1, keepdims=True)
        return np.where(total > 1, est / np.maximum(total, 1e-9), est)

    def fade(self, keep: float) -> None:
        """Weigh the decisions counted so far by ``keep``: acceptance moves within a run (the demo draft matched 1 of
        a held-out prompt's first 7 tokens and 23 of its last 30), and the
        rate that matters for the next step is the recent one."""
        self.tried *= keep
        self.accepted *= keep

    def observe_confidence(self, depth: int, top: list[float]) -> None:
        if 1 <= depth <= MAX_DEPTH:
            n = min(len(top), RANKS)
            self.conf_sum[depth - 1, :n] += top[:n]
            self.conf_n[depth - 1, :n] += 1

    def observe_decision(self, depth: int, rank: int, accepted: bool) -> None:
        if 1 <= depth <= MAX_DEPTH and rank < RANKS:
            self.tried[depth - 1, rank] += 1
            self.accepted[depth - 1, rank] += accepted
            self.decided += depth == 1


def card_prior(config: dict | None) -> np.ndarray:
    """The first step's acceptance: the heads' model card (held-out top-1 for rank 0, the rest of top-5 spread
    over ranks 1..4, per head; the last head's for deeper depths), else a neutral guess that the first draft's
    own confidence replaces."""
    prior = np.tile(np.asarray(NEUTRAL_PRIOR), (MAX_DEPTH, 1))
    acc = (config or {}).get("accuracy") or {}
    top1, top5 = acc.get("top1") or [], acc.get("top5") or []
    for d in range(MAX_DEPTH):
        if top1:
            t1 = float(top1[min(d, len(top1) - 1)])
            t5 = float(top5[min(d, len(top5) - 1)]) if top5 else t1
            prior[d] = [t1, *[max(t5 - t1, 0) / 4] * (RANKS - 1)]
    return prior


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class Candidate:
    shape: Shape
    tokens: float  # expected tokens per step (bonus included)
    seconds: float  # expected seconds per step

    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self, base: float) -> dict:
        return {"shape": self.shape.as_dict(), "expected_tokens_per_step": self.tokens,
                "ms_per_step": 1000 * self.seconds, "expected_speedup": self.tokens * base / self.seconds}  # fmt: skip


def pool_scores(acc: np.ndarray, k: int, depth: int) -> list[tuple[int, float]]:
    """EAGLE-2's pool grown on expected acceptance instead of the draft's scores: per depth the k best frontier
    nodes get their top-k children, the frontier keeps the k best; (depth, path probability) of every node."""
    frontier = [(1, float(acc[0, r])) for r in range(k)]
    nodes = list(frontier)
    for d in range(2, depth + 1):
        expand = sorted(frontier, key=lambda n: -n[1])[:k]
        children = [(d, s * float(acc[d - 1, r])) for _, s in expand for r in range(k)]
        nodes += children
        frontier = sorted(children, key=lambda n: -n[1])[:k]
    return nodes


def _best_budgets(table: list[float], per: float, nodes: list, depths, k: int, budget: int | None) -> list:
    """The best node budget of a (depth, k) tree for every depth in ``depths``: ``nodes`` is the pool's (depth,
    path probability), best first; a tree of depth d keeps its best nodes no deeper than d (at most MAX_NODES), and
    its step costs ``table[n]`` (verifying n nodes, bookkeeping) plus d draft forwards of ``per`` seconds. One pass
    adds each node to every tree deep enough for it (a filter and a loop per depth had cost 0.25 ms a choice, about
    1 ms in a run's cold caches). Plain Python: numpy's per-call cost dominated at these sizes."""
    top = max(depths)
    wanted = [d in depths for d in range(top + 1)]
    count, tokens, best = [0] * (top + 1), [1.0] * (top + 1), [None] * (top + 1)
    for dep, score in nodes:
        for d in range(dep, top + 1):
            if not wanted[d] or count[d] >= MAX_NODES:
                continue
            n = count[d] = count[d] + 1
            t = tokens[d] = tokens[d] + score
            seconds = table[n] + d * per
            if budget is None:
                b = best[d]
                if b is None or t * b[2] > b[1] * seconds:
                    best[d] = (n, t, seconds)
            elif n == budget:
                best[d] = (n, t, seconds)
    out = []
    for d in depths:
        n, t, seconds = best[d] if best[d] is not None else (count[d], tokens[d], table[count[d]] + d * per)
        out.append(Candidate(Shape(d, k, n), t, seconds))  # (a budget over the pool's size: all of it)
    return out


def candidates(method: str, acc: np.ndarray, costs: Costs, fixed: dict, max_depth: int = MAX_DEPTH) -> list:
    """Every shape the method can draft (within ``fixed``: the dimensions the user set), each with its expected
    tokens and seconds per step."""
    out: list[Candidate] = []
    depths = [fixed["depth"]] if fixed.get("depth") else range(1, max_depth + 1)
    if method in TREE_METHODS:
        widths = [fixed["topk"]] if fixed.get("topk") else range(1, MAX_TOPK + 1)
        sizes = np.arange(MAX_NODES + 1)
        tables = {tree: (costs.step(sizes, 0, tree)).tolist() for tree in (False, True)}
        for k in widths:
            nodes = sorted(pool_scores(acc, k, max(depths)), key=lambda n: -n[1])
            per = costs.tree_forward if k > 1 else costs.draft_forward
            out += _best_budgets(tables[k > 1], per, nodes, depths, k, fixed.get("budget"))
        return out
    if method == "medusa":
        return medusa_candidates(acc, costs, max_depth)
    ds = np.asarray(list(depths))
    tokens = 1 + np.cumsum(np.cumprod(acc[:max_depth, 0]))[ds - 1]
    seconds = costs.step(ds, 0 if method == "lookup" else ds, False)  # (draft_forwards: one per depth)
    rows = zip(ds.tolist(), tokens.tolist(), seconds.tolist(), strict=True)
    return [Candidate(chain_shape(d), t, s) for d, t, s in rows]


def candidate_for(method: str, shape: Shape, acc: np.ndarray, costs: Costs) -> Candidate | None:
    """``shape``'s expected tokens and seconds, for a shape :func:`candidates` may leave out: a tree's other
    budgets than its depth and width's best, a Medusa tree that is no prefix of the best-first order (the current
    shape, after the acceptance moved; None for a chain, every depth of which is a candidate)."""
    if shape.paths is not None:
        rates = acc[:, :RANKS]
        tokens = 1 + sum(float(np.prod([rates[i, r] for i, r in enumerate(path)])) for path in shape.paths)
        return Candidate(shape, tokens, float(costs.step(len(shape.paths), 1, shape.tree)))
    if method not in TREE_METHODS:
        return None
    k = shape.topk
    table = costs.step(np.arange(MAX_NODES + 1), 0, k > 1).tolist()
    nodes = sorted(pool_scores(acc, k, shape.depth), key=lambda n: -n[1])
    per = costs.tree_forward if k > 1 else costs.draft_forward
    found = _best_budgets(table, per, nodes, [shape.depth], k, shape.budget)[0]
    return replace(found, shape=shape)


def medusa_candidates(acc: np.ndarray, costs: Costs, heads: int) -> list[Candidate]:
    """Medusa's static tree: every path of ranks (one head per depth) by its expected acceptance, best first (an
    ancestor-closed order: a path scores at most its parent, and ties go to the shorter); one candidate per prefix
    of that order. Grown best-first from a heap (not the 4 + 16 + 64 + ... paths sorted), each prefix extending the
    last, and only while a longer prefix could still beat the best so far: none can hold more expected tokens than
    all paths together (1 + the sum over depths of the product of each head's acceptance over its ranks), nor
    verify faster than the cheapest of the larger node counts. On this CPU's curve that stops after a few of
    the 32 prefixes; on a flat (GPU) curve it grows all of them. (A Medusa choice had cost 0.7 ms in a run, a
    quarter of a target step, then 0.25 ms with all 32 prefixes.)"""
    rates = acc[:heads, :RANKS].tolist()
    frontier = [(-rates[0][r], 1, (r,)) for r in range(RANKS)] if heads else []  # (−score, length, path)
    heapq.heapify(frontier)
    sizes = np.arange(MAX_NODES + 1)
    seconds = {tree: costs.step(sizes, 1, tree).tolist() for tree in (False, True)}
    floor = [min(a, b) for a, b in zip(seconds[False], seconds[True], strict=True)]
    for n in range(MAX_NODES - 1, -1, -1):  # the least seconds of n nodes or more
        floor[n] = min(floor[n], floor[n + 1])
    everything, reach = 1.0, 1.0  # expected tokens of the tree of all paths
    for row in rates:
        reach *= sum(row)
        everything += reach
    out: list[Candidate] = []
    chosen: list[tuple[int, ...]] = []
    order: list[tuple[int, tuple[int, ...]]] = []  # chosen's sort keys (length, path), kept beside it
    tokens, depth, top = 1.0, 0, 0.0
    while frontier and len(out) < MAX_NODES and everything > top * floor[len(out) + 1]:
        neg, length, path = heapq.heappop(frontier)
        if length < heads:
            row = rates[length]
            for r in range(RANKS):
                heapq.heappush(frontier, (neg * row[r], length + 1, path + (r,)))
        at = bisect.bisect(order, (length, path))  # (a key function here was half a choice's time)
        order.insert(at, (length, path))
        chosen.insert(at, path)
        tokens -= neg
        depth = max(depth, length)
        shape = Shape(depth, RANKS, len(chosen), tuple(chosen))
        out.append(Candidate(shape, tokens, seconds[shape.tree][len(chosen)]))
        top = max(top, out[-1].rate())
    return out


def plain(costs: Costs) -> Candidate:
    """Plain decoding in this engine: one token per decode step, plus a plain step's own bookkeeping (its record,
    as timed in the run; the engine runs such a step as a decode step, not through the drafting steps'
    bookkeeping, which weighed it 7% too slow and kept MTP at chains of 1 that paid 0.85x)."""
    return Candidate(NO_SPECULATION, 1.0, costs.base + costs.plain_overhead)


def best(cands: list[Candidate], costs: Costs) -> Candidate:
    """The candidate with the most tokens per second, or plain decoding when none beats it by PAYS_MARGIN."""
    top = max(cands, key=Candidate.rate, default=None)
    alone = plain(costs)
    return top if top is not None and top.rate() > alone.rate() * PAYS_MARGIN else alone


def neighbours(method: str, chosen: Candidate, cands: list[Candidate], costs: Costs) -> dict:
    """The chosen shape beside the ones around it: one level deeper, one wider, a chain of its depth, none."""
    s = chosen.shape
    pick = {c.shape: c for c in cands}
    out: dict[str, Candidate | None] = {"chosen": chosen}

    def best_of(pred) -> Candidate | None:
        found = [c for c in cands if pred(c.shape)]
        return max(found, key=Candidate.rate) if found else None

    depth = max(s.depth, 1)
    if method == "medusa":
        out["deeper"] = best_of(lambda x: x.depth == depth + 1)
        out["wider"] = best_of(lambda x: x.depth == depth and x.nodes > s.nodes)
        out["chain"] = best_of(lambda x: x.depth == depth and not x.tree)
    elif method in TREE_METHODS:
        out["deeper"] = best_of(lambda x: x.depth == depth + 1 and x.topk == s.topk)
        out["wider"] = best_of(lambda x: x.depth == depth and x.topk == s.topk + 1)
        out["chain"] = best_of(lambda x: x.depth == depth and x.topk == 1)
    else:
        out["deeper"] = pick.get(chain_shape(depth + 1))
        out["wider"] = None  # a chain has one candidate per depth
        out["chain"] = pick.get(chain_shape(depth))
    out["no speculation"] = plain(costs)
    return out


# ---------------------------------------------------------------------------------------------- the chooser
@dataclass
class ShapeChooser:
    """Chooses each step's shape for one run and learns from it (:meth:`observe`); :meth:`report` says what it
    chose and why. ``fixed``: the shape dimensions the user set (the rest are chosen); ``timing``: learn drafting
    and bookkeeping seconds from the steps (off in recordings, which must not depend on the clock)."""

    method: str
    costs: Costs
    acceptance: Acceptance
    fixed: dict = field(default_factory=dict)
    max_depth: int = MAX_DEPTH
    timing: bool = True
    current: Candidate | None = None
    changes: list[dict] = field(default_factory=list)
    fallback_note: str | None = None
    _steps_since_choice: int = 0
    _misses: int = 0  # steps since the last choice whose first drafted node was rejected
    _expected_misses: float = 0.0  # ... as many as the choice expected
    _miss_rate: float = 0.0  # the chosen shape's expected chance that a step accepts nothing
    _every: int = RECHOOSE_EVERY  # steps between periodic choices
    _probed: bool = False  # a probe was drafted since the last choice
    _probe_hit: bool = False  # the last probe was accepted: choose again before the next step
    _plain_steps: int = 0
    _decided_from: int = 0  # the run's depth-1 decisions counted at its latest accepted probe
    _next_probe: int = PROBE_FIRST  # the plain step of the next probe
    _probe_gap: int = PROBE_FIRST
    _explore: Shape | None = None  # one level deeper than the chosen shape, where it may pay (set by each choice)
    _table: np.ndarray | None = None  # the acceptance table the latest choice saw
    _timings: dict = field(default_factory=dict)  # cost name or (nodes, tree) -> the last WINDOW (step, seconds)
    _clock: int = 0  # steps observed (the age of a timing)
    _cands: list = field(default_factory=list)  # the candidates as the latest choice estimated them
    memory_key: tuple | None = None  # where :meth:`remember` keeps what this run learnt for the next one

    def remember(self) -> None:
        """Keep what the run learnt (its acceptance counts, which :meth:`recall` weighs down; the timing
        windows) for this process's next run of the same target and drafter: the GUI's next Run, the
        timed pairs of explorer speculate. Only runs that learn from the clock remember (recordings and
        prompt-set runs must not depend on what ran before)."""
        if self.memory_key is not None:
            aged = {k: [(t - self._clock, v) for t, v in seen] for k, seen in self._timings.items()}
            _MEMORY[self.memory_key] = (self.acceptance, aged)

    def recall(self) -> None:
        """Start from what the last run of the same target and drafter learnt (see :meth:`remember`)."""
        kept = _MEMORY.get(self.memory_key) if self.memory_key is not None else None
        if kept is None:
            return
        acc, timings = kept
        self._timings = {k: list(v) for k, v in timings.items()}  # aged: the last one was one step ago
        self._apply_timings()
        # half weight, and at most RECALL_CAP decisions per cell: a new prompt's own decisions outweigh the last
        # prompt's within a few steps (a predictable prompt had kept the next, unpredictable one at a chain of 3
        # for 32 steps); they do not count as the run's own before a fallback (Acceptance.decided)
        for count, total in (("tried", "accepted"), ("conf_n", "conf_sum")):
            n = getattr(acc, count)
            keep = np.minimum(0.5, RECALL_CAP / np.maximum(n, 1e-9))
            setattr(self.acceptance, count, n * keep)
            setattr(self.acceptance, total, getattr(acc, total) * keep)

    @property
    def max_nodes(self) -> int:
        if self.method in TREE_METHODS:
            return self.fixed.get("budget") or MAX_NODES
        if self.method == "medusa":
            return MAX_NODES
        return self.fixed.get("depth") or self.max_depth

    def evaluate(self) -> tuple[Candidate, list[Candidate]]:
        self._apply_timings()
        self._table = self.acceptance.table()
        cands = candidates(self.method, self._table, self.costs, self.fixed, self.max_depth)
        return best(cands, self.costs), cands

    def shape_for(self, step: int) -> tuple[Shape, bool]:
        """The shape of step ``step`` (0-based) and whether it is a probe (one cheap draft after a fallback)."""
        early = step in (1, 2, 4)  # the estimates move most in a run's first steps (its own prompt's decisions)
        # While decoding plainly only a probe brings news: no periodic choice without one (a choice costs 0.3-0.7
        # ms in a run, a sixth of a demo step), and an accepted probe is weighed at once
        periodic = self._steps_since_choice >= self._every and (self.current.shape.depth or self._probed)
        missed = self._misses >= max(RECHOOSE_AFTER_MISSES, MISSES_OVER_EXPECTED * self._expected_misses)
        due = self.current is None or early or periodic or missed or self._probe_hit
        if due:
            if self._choose(step):
                self._every = RECHOOSE_EVERY
            elif periodic:  # kept again: drift is slow here (misses still call a choice at once)
                self._every = min(2 * self._every, RECHOOSE_MAX)
            self._probed = self._probe_hit = False
        self._steps_since_choice += 1
        shape = self.current.shape
        if shape.depth == 0:
            self._plain_steps += 1
            if self._plain_steps >= self._next_probe:
                self._probed = True
                self._next_probe = self._plain_steps + self._probe_gap  # (a rejection doubles the gap: observe)
                return (self._probe_shape(), True)
        elif self._explore_due(step):
            return self._explore, True
        return shape, False

    def _explore_due(self, step: int) -> bool:
        """Every EXPLORE_EVERY-th step while the level below the chosen one has few decisions, then a third as
        often (each exploring step costs a draft forward and a node that the choice said not to pay for); never
        where that level is not expected to come within EXPLORE_WITHIN of the choice (``_explore`` None)."""
        if self._explore is None:
            return False
        known = self.acceptance.tried[min(self.current.shape.depth, MAX_DEPTH - 1)].sum() >= KNOWN_DECISIONS
        every = 3 * EXPLORE_EVERY if known else EXPLORE_EVERY
        return step % every == every - 1

    def _deeper_may_pay(self, shape: Shape) -> bool:
        """Whether one level deeper is expected within EXPLORE_WITHIN of the chosen shape's tokens per second (at
        the latest choice): a level expected to pay clearly less is not worth a probe's draft forward and node.
        A level with fewer than KNOWN_DECISIONS decisions is also weighed at the rate of the level above it (the
        table's own guess for an undecided depth): two early rejections at depth 2 had dropped EAGLE's chain of 3
        for a chain of 1, and with depth 2 then never explored its estimate stayed at 0.33-0.55 for the rest of
        the run while the heads' depth 2 was accepted 80% of the time (1.29x where a fixed chain of 3 gave 1.48x)."""
        if shape.depth == 0 or not self._cands:
            return True
        now = self._expected(shape, self._cands).rate()

        def within(cands: list[Candidate]) -> bool:
            deeper = [c for c in cands if c.shape.depth == shape.depth + 1 and c.shape.topk == shape.topk]
            return bool(deeper) and max(c.rate() for c in deeper) >= EXPLORE_WITHIN * now

        if within(self._cands):
            return True
        level = shape.depth  # the deeper level's row (one exists: _deeper checked the depth; _cands set _table)
        if self.acceptance.tried[level].sum() >= KNOWN_DECISIONS:
            return False
        guess = self._table.copy()
        guess[level] = guess[level - 1]
        only = {**self.fixed, "depth": shape.depth + 1, "topk": shape.topk}  # (the level's candidates alone)
        return within(candidates(self.method, guess, self.costs, only, self.max_depth))

    def _explore_for(self, shape: Shape) -> None:
        deeper = self._deeper(shape) if shape.depth else None
        self._explore = deeper if deeper is not None and self._deeper_may_pay(shape) else None

    def _deeper(self, shape: Shape) -> Shape | None:
        """One level deeper than ``shape`` (one more node on its best path), to measure what it would pay; None
        where the depth is the user's or at its limit (Medusa's trees are paths: none)."""
        if "depth" in self.fixed or shape.depth >= self.max_depth or self.method == "medusa":
            return None
        if self.method in TREE_METHODS:
            return Shape(shape.depth + 1, shape.topk, min(shape.budget + 1, self.fixed.get("budget") or MAX_NODES))
        return chain_shape(shape.depth + 1)

    def _probe_shape(self) -> Shape:
        if self.method == "medusa":
            return Shape(1, RANKS, 1, ((0,),))
        return Shape(1, 1, 1)

    def _choose(self, step: int) -> bool:
        """Choose the shape of the steps from ``step`` on; whether it changed."""
        self._steps_since_choice = self._misses = 0
        self._expected_misses = 0.0
        top, cands = self.evaluate()
        self._cands = cands  # what the choice saw: the report's figures
        # this run's own decisions since it started or since an accepted probe: acceptance moves within a run,
        # and a probe that hits after a fallback earns the cheapest shape a few steps of its own
        if self._probe_hit:
            self._decided_from = self.acceptance.decided
        decided = self.acceptance.decided - self._decided_from
        trial = False  # drafting again on thin evidence: no switching margin against plain decoding
        if top.shape.depth == 0 and decided < FALLBACK_SURE:
            # too little evidence to stop drafting: keep the cheapest shape until the first depth has a few
            # decisions (one rejected first step had sent the demo draft model, under-confident at 0.1 where it
            # was accepted half the time, to plain decoding for 30 steps), more where it costs little
            cheapest = min((c for c in cands if c.shape.depth == 1), key=lambda c: c.seconds, default=top)
            alone = plain(self.costs)
            near = cheapest.rate() >= FALLBACK_NEAR * alone.rate()
            could = cheapest.seconds < (cheapest.shape.depth + 1) * alone.seconds  # pays were all its drafts accepted
            if could and (decided < FALLBACK_AFTER or near):
                top, trial = cheapest, True
        cur = self.current
        if cur is not None:
            now = self._expected(cur.shape, cands)
            # SWITCH_GAIN keeps a shape against a slightly better one (no flapping), but not a shape that no longer
            # pays: kept against plain decoding by 8%, MTP drafted chains expected (and measured) 7% slower
            pays = cur.shape.depth == 0 or now.rate() > plain(self.costs).rate() * PAYS_MARGIN
            # nor, on thin evidence, for a shallower one while the current one pays: a prompt's first tokens are
            # its hardest (cut mid-line), and EAGLE's chain of 3, cut to a chain of 1 after two missed first
            # steps, explored its depth 2 too rarely to come back (1.30x where the chain of 3 gave 1.46x)
            thin = decided < FALLBACK_SURE and 0 < top.shape.depth < cur.shape.depth
            keep = top.rate() <= now.rate() * SWITCH_GAIN or thin
            if top.shape == cur.shape or (pays and not trial and keep):
                self._settle(now)
                return False
        if cur is None or top.shape.label() != cur.shape.label():  # (equal labels: the same drafts)
            self.changes.append({"step": step + 1, "from": None if cur is None else cur.shape.label(),
                                 "to": top.shape.label(), "to_short": top.shape.short(),
                                 "from_short": None if cur is None else cur.shape.short(),
                                 "reason": self._why(top, cur, cands)})  # fmt: skip
        self._settle(top)
        if top.shape.depth == 0:  # a fallback: the first probe comes soon again
            self._next_probe, self._probe_gap = self._plain_steps + PROBE_FIRST, PROBE_FIRST
        if top.shape.depth == 0 and self.fallback_note is None:
            self.fallback_note = (f"step {step + 1}: no draft shape is expected to pay on this machine (best "
                                  f"{self._best_spec(cands)}); "
                                  "decoding with the target alone")  # fmt: skip
        return True

    def _settle(self, chosen: Candidate) -> None:
        """Make ``chosen`` the current shape: what one level deeper would be explored with, and how often a step
        of it is expected to accept nothing (its depth-1 nodes all rejected)."""
        self.current = chosen
        self._explore_for(chosen.shape)
        s = chosen.shape
        first = 0 if s.depth == 0 else (sum(len(p) == 1 for p in s.paths) if s.paths else min(s.topk, s.budget))
        self._miss_rate = float(1 - min(self._table[0, : min(first, RANKS)].sum(), 1.0)) if first else 0.0

    def _expected(self, shape: Shape, cands: list[Candidate]) -> Candidate:
        """``shape``'s expected tokens and seconds among ``cands``, else from the latest table (a tree's best budget
        may have moved: the current shape had read as plain decoding, 1.00x, and was dropped at once)."""
        if shape.depth == 0:
            return plain(self.costs)
        found = next((c for c in cands if c.shape == shape), None)
        if found is None and self._table is not None:  # (a tree's best budget moved: the shape is no candidate)
            found = candidate_for(self.method, shape, self._table, self.costs)
        return found if found is not None else plain(self.costs)

    def _best_spec(self, cands: list[Candidate]) -> str:
        c = max(cands, key=Candidate.rate)
        return f"{c.shape.label()}: {c.tokens * self.costs.base / c.seconds:.2f}× expected"

    def _why(self, top: Candidate, cur: Candidate | None, cands: list[Candidate]) -> str:
        def said(c: Candidate) -> str:
            return f"{c.tokens:.2f} tok/step, {c.tokens * self.costs.base / c.seconds:.2f}×"

        if cur is None:
            return f"first choice: {said(top)} expected"
        return f"{said(top)} expected vs {said(self._expected(cur.shape, cands))}"

    def observe(self, draft, record) -> None:
        """Learn from a finished step: the draft's confidence per depth and rank, each reached node's decision,
        and (``timing``) the drafting and bookkeeping seconds."""
        self._clock += 1
        tree = record.tree
        n = len(tree.tokens)
        if self.timing and record.forward_seconds and not n:  # a plain step: the decode step's own time
            self._observe_forward((0, False), record.forward_seconds)
            self._note("plain_overhead", record.verify_seconds - record.forward_seconds)
        if not n:  # while it decodes plainly, the decisions that made it stop fade (see Acceptance.fade)
            self.acceptance.fade(DECISIONS_KEEP)
            return
        parent, depth = tree.parent.tolist(), tree.depth.tolist()
        ranks = draft.rank if getattr(draft, "rank", None) else sibling_ranks(parent)
        accepted = set(record.accepted)
        probe = self.current is not None and self.current.shape.depth == 0
        if probe:
            self.probe_result(bool(accepted))
        else:
            self._misses += not accepted
            self._expected_misses += self._miss_rate
        for i in range(n):
            if parent[i] < 0 or parent[i] in accepted:
                self.acceptance.observe_decision(depth[i], ranks[i], i in accepted)
        read = self.acceptance.conf_n[0, 0] < CONFIDENCE_READINGS or self._clock % 4 == 0
        if read and not self.acceptance.measured:  # a card stands in for the confidence (see Acceptance.table)
            self._observe_confidence(draft, depth)
        if self.timing:
            self._observe_timing(record, n, probe)

    def probe_result(self, accepted: bool) -> None:
        """An accepted probe is weighed at the next step (it alone can make drafting pay again); a rejected one
        doubles the wait before the next probe, up to PROBE_MAX_GAP plain steps (each costs a draft forward and a
        verified node: on a prompt the draft never matches, the old every-16th schedule cost 5% of a run)."""
        self._probe_hit = accepted
        if not accepted:
            self._probe_gap = min(2 * self._probe_gap, PROBE_MAX_GAP)
            self._next_probe = self._plain_steps + self._probe_gap

    def _observe_confidence(self, draft, depth: list[int]) -> None:
        seen: dict[int, int] = {}
        for i, dist in enumerate(draft.dists):
            if dist is not None and id(dist) not in seen:
                seen[id(dist)] = i
        if not seen:
            return
        rows = [draft.dists[i] for i in seen.values()]
        top = torch.topk(torch.stack([r.float() for r in rows]), RANKS, dim=-1).values.tolist()
        for i, t in zip(seen.values(), top, strict=True):
            self.acceptance.observe_confidence(depth[i], t)

    def _observe_timing(self, record, nodes: int, probe: bool = False) -> None:
        """Note the step's drafting (per forward), bookkeeping and verification forward; they become costs when the
        next choice is made (:meth:`_apply_timings`), not every step. A probe's drafting is not noted: its draft
        first catches up on the tokens decoded plainly since the last one (1.6 ms a forward for the demo draft
        against 1.0 ms while drafting), and probes alone would keep a fallback from ever ending."""
        tree = record.mask is not None
        if self.method == "lookup" and not probe:
            self._note("draft_fixed", record.draft_seconds)
        elif record.draft_calls and not probe:
            self._note("tree_forward" if tree else "draft_forward", record.draft_seconds / record.draft_calls)
        if record.forward_seconds:
            self._note("overhead", record.verify_seconds - record.forward_seconds)
            self.costs.overhead_nodes = nodes
            self._observe_forward((nodes, tree and nodes > 1), record.forward_seconds)

    def _observe_forward(self, key: tuple[int, bool], seconds: float) -> None:
        self._note(key, seconds)

    def _note(self, name: str | tuple[int, bool], value: float) -> None:
        """One timing of ``name``: a cost (its attribute of :class:`Costs`) or a verification forward's
        (nodes, tree)."""
        seen = self._timings.setdefault(name, [])
        seen.append((self._clock, value))
        if len(seen) > WINDOW:
            del seen[0]

    def _apply_timings(self) -> None:
        """The fastest of the last WINDOW steps' drafting, bookkeeping and verification forwards: the costs the
        curve's unit measures (its fastest rounds), free of the stalls of a shared machine. Each replaces its prior
        from its third timing on (a run's first step runs cold: one slow step must not end speculation). A node
        count's forwards replace the curve there only with 3 in the last STALE_AFTER steps; older ones leave it
        (the curve, shifted by the recent ones, stands for them): a node count timed while the machine was busy
        must not be weighed against one timed once it was quiet."""
        if not self.timing:
            return
        for cost in ("draft_fixed", "tree_forward", "draft_forward", "overhead", "plain_overhead"):
            seen = self._timings.get(cost)
            if seen is not None and len(seen) >= 3:
                setattr(self.costs, cost, float(min(v for _, v in seen)))
        self.costs.observed.clear()
        for name, seen in self._timings.items():
            if isinstance(name, tuple):  # a verification forward's (nodes, tree)
                recent = [v for t, v in seen if self._clock - t < STALE_AFTER]
                if len(recent) >= 3:
                    self.costs.observed[name] = min(recent)

    def report(self) -> dict:
        """JSON-ready: the shape in use, why (its expected tokens and time per step against its neighbours, as the
        latest choice estimated them), the changes during the run and the fallback note."""
        top, cands = self.evaluate() if self.current is None else (self.current, self._cands)
        chosen = self._expected(top.shape, cands)
        near = neighbours(self.method, chosen, cands, self.costs)
        base = self.costs.base
        return {
            "mode": "auto",
            "fixed": dict(self.fixed),
            "shape": chosen.shape.as_dict(),
            "expected_tokens_per_step": chosen.tokens,
            "ms_per_step": 1000 * chosen.seconds,
            "expected_speedup": chosen.tokens * base / chosen.seconds,
            "neighbours": {k: None if v is None else v.as_dict(base) for k, v in near.items()},
            "acceptance": np.round(self.acceptance.table(), 4).tolist(),
            "costs": {
                "target_step_ms": 1000 * base,
                "curve_offset_ms": 1000 * float(self.costs.offset(0)),
                "draft_forward_ms": 1000 * self.costs.draft_forward,
                "tree_draft_forward_ms": 1000 * self.costs.tree_forward,
                "bookkeeping_ms": 1000 * self.costs.overhead,
            },  # fmt: skip
            "curve": {k: self.costs.curve.get(k) for k in ("key", "cached", "measured_seconds", "measured_at")},
            "changes": self.changes,
            "fallback": self.fallback_note,
        }


_MEMORY: dict[tuple, tuple] = {}  # (target, method, drafter) -> what the last such run learnt (ShapeChooser.remember)


def sibling_ranks(parent: list[int]) -> list[int]:
    """Each node's rank among its siblings (drafting order: the draft's top-k order)."""
    count: dict[int, int] = {}
    out = []
    for p in parent:
        out.append(count.get(p, 0))
        count[p] = out[-1] + 1
    return out


def fixed_dims(options: SpecOptions) -> dict | None:
    """The shape dimensions the options fix (0 / "" = chosen); None when every one is fixed (no chooser)."""
    m = options.method
    if m in TREE_METHODS:
        fixed = {k: v for k, v in (("depth", options.tree_depth), ("topk", options.tree_topk),
                                   ("budget", options.tree_budget)) if v}  # fmt: skip
        return None if len(fixed) == 3 else fixed
    if m == "medusa":
        return None if options.medusa_tree else {}
    return None if options.gamma else {}


def draft_cost_prior(target, drafter_params: int) -> float:
    """Seconds of one draft forward before any was timed: a forward streams its weights, so the target step's
    time scaled by the parameter ratio (at least 3% of it: small heads are bound by per-operation overhead)."""
    return max(drafter_params / max(parameters(target.model), 1), 0.03)


_PARAMETERS: dict[int, int] = {}


def parameters(module) -> int:
    """A module's parameter count (counted once per module object)."""
    key = id(module)
    if key not in _PARAMETERS:
        _PARAMETERS[key] = sum(p.numel() for p in module.parameters())
    return _PARAMETERS[key]


def make_chooser(options: SpecOptions, target, draft=None, heads=None, curve: dict | None = None,
                 timing: bool = True, tag: str = "") -> ShapeChooser | None:  # fmt: skip
    """The chooser of a run whose options leave some shape dimension to choose (None when all are set); ``tag``
    tells apart what runs of the same drafter remember (prompt lookup's 1-gram matches from its longer ones)."""
    fixed = fixed_dims(options)
    if fixed is None:
        return None
    curve = curve if curve is not None else curve_for(target)
    base = float(curve["base_seconds"])
    if draft is not None:
        params = parameters(draft.model)
    elif heads is not None:
        rows = len(heads.draft_vocab or []) or target.config.vocab_size
        own = parameters(heads.module) // max(heads.count, 1)  # one head / module / layer
        params = own + rows * target.config.hidden_size
    else:
        params = 0
    per = base * (draft_cost_prior(target, params) if params else 0.0)
    tree_per = per * (1.5 if heads is not None else 1.1)  # masked forwards over several nodes (no lean path)
    costs = Costs(dict(curve), per, tree_per, overhead=0.15 * base, overhead_nodes=4.0)
    prior = card_prior(heads.config if heads is not None else None)
    if options.method == "lookup":
        prior[:, 0], prior[:, 1:] = 0.5, 0.0  # a lookup continuation has no confidence (q = 1); its decisions tell
    max_depth = MAX_DEPTH
    if heads is not None and heads.kind in ("mtp", "medusa") and options.method == heads.kind:
        max_depth = min(heads.count, MAX_DEPTH)
    card = heads is not None and bool((heads.config.get("accuracy") or {}).get("top1"))
    chooser = ShapeChooser(options.method, costs, Acceptance(prior, measured=card), fixed, max_depth, timing)
    if timing:  # a run that learns from the clock starts where the last one of this target and drafter ended
        drafter = draft.model if draft is not None else heads.module if heads is not None else None
        chooser.memory_key = (id(target.model), options.method, id(drafter), str(curve.get("key")), tag)
        chooser.recall()
    return chooser


def expected_speedup(options: SpecOptions, target, draft=None, heads=None, curve: dict | None = None) -> float:
    """What a method is expected to pay before it ran (its best shape from the priors): to choose the default."""
    chooser = make_chooser(replace(options, gamma=0, tree_depth=0, tree_topk=0, tree_budget=0, medusa_tree=""),
                           target, draft, heads, curve)  # fmt: skip
    top, _ = chooser.evaluate()
    return top.tokens * chooser.costs.base / top.seconds


def choose_method(options: SpecOptions, target, heads: dict, draft=None,
                  curve: dict | None = None) -> tuple[str, str, str | None]:  # fmt: skip
    """The drafting method ``auto`` stands for, why, and the kind of heads it drafts with besides (None: none).
    With heads found (``heads``: kind -> loaded heads): prompt lookup first, with the kind whose best shape is
    expected to pay most on this machine (their model card's acceptance, their size, this target's
    verification-cost curve) wherever lookup's continuation is not expected to pay more (explorer/speculative/
    lookup_first.py: on the demo target's 13 held-out prompts 1.79x median against the EAGLE heads' 1.45x, 1.0-1.3x
    for lookup alone where the text does not repeat). Without heads, the draft model's chain, else prompt lookup."""
    if heads:
        figures = {kind: expected_speedup(replace(options, method=kind), target, None, h, curve)
                   for kind, h in heads.items()}  # fmt: skip
        # ties (nothing expected to pay, each 1.00×): the kind whose card promises the most accepted tokens
        accuracy = {k: float(((h.config.get("accuracy") or {}).get("top1") or [0])[0]) for k, h in heads.items()}
        kind = max(figures, key=lambda k: (round(figures[k], 2), accuracy[k]))
        others = ", ".join(f"{k} {v:.2f}×" for k, v in sorted(figures.items(), key=lambda kv: -kv[1]))
        return "lookup", f"auto: prompt lookup first, else the {kind} heads, expected to pay most here ({others})", kind
    if draft is not None:
        return "chain", "auto: chain, the draft model (no heads found beside the target)", None
    return "lookup", "auto: prompt lookup (no heads found beside the target, no draft model)", None
