"""How a step's candidates are drafted: one strategy per method, each returning a :class:`Draft` (chain, tree,
lookup, medusa, eagle, mtp); and the pieces that hold no model: prompt lookup and the EAGLE-2 candidate pool that
the draft-model tree and EAGLE's tree both grow. The strategies run their forwards on the caches of the engine's
:class:`~explorer.speculative.engine.Speculator`, which owns them (and verifies, accepts and commits)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ExplorerError
from ..models.checkpoint import LoadedModel
from .heads import Heads, lm_logits, parse_choices
from .records import SpecOptions


class Speculator(Protocol):
    """What a strategy reads of the engine's Speculator: the options, the context (its last token is the root),
    the models, the caches and features it drafts on, the random generator, and the distributions' rule."""

    opt: SpecOptions
    context: list[int]
    target: LoadedModel
    draft: LoadedModel | None
    heads: Heads | None
    vocab: int  # the vocabulary both models share
    gen: torch.Generator
    dcache: Any  # the draft model's KV cache
    ecache: Any  # EAGLE's own cache
    feats: torch.Tensor | None  # the target's feature at every position
    erope: tuple[torch.Tensor, torch.Tensor]  # EAGLE's RoPE table

    def probs(self, logits: torch.Tensor) -> torch.Tensor: ...

    def lookup_match(self, n_max: int) -> tuple[int, int]: ...  # lookup_match on the context, once per context


@dataclass
class Draft:
    """One step's candidates, parents first. Node i's parent is ``parent[i]`` (-1: the root)."""

    tokens: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    q: list[float] = field(default_factory=list)  # the draft probability of each token (1.0: a deterministic pick)
    dists: list = field(default_factory=list)  # the draft distribution each was drawn from (None: none, lookup)
    fed: dict[int, int] = field(default_factory=dict)  # node -> draft-model cache slot, for the nodes fed back
    calls: int = 0  # draft forwards
    source: list[int] | None = None  # heads: the head / module / depth that proposed each node
    rank: list[int] | None = None  # each node's rank in its draft distribution where siblings skip ranks (Medusa)

    @classmethod
    def chain(cls, tokens: list[int], q: list[float], dists: list, **kw) -> Draft:
        """A chain: node i's parent is node i − 1."""
        return cls(tokens, list(range(-1, len(tokens) - 1)), q, dists, **kw)


class Drafter:
    """A drafting strategy: :meth:`draft` proposes up to ``depth`` levels of candidates after the context's last
    token (the root); ``max_nodes`` bounds how many one step verifies (the caches leave room for them)."""

    def __init__(self, spec: Speculator):
        self.spec = spec

    @property
    def max_nodes(self) -> int:
        return self.spec.opt.max_nodes

    def draft(self, depth: int) -> Draft:
        raise NotImplementedError

    def draw(self, logits: torch.Tensor) -> tuple[int, torch.Tensor]:
        """A chain's next token and q: sampled from q under the sample rule, else the argmax."""
        spec = self.spec
        probs = spec.probs(logits)
        if spec.opt.accept == "sample":
            return int(torch.multinomial(probs, 1, generator=spec.gen)), probs
        return int(torch.argmax(logits)), probs


# -- the draft model -------------------------------------------------------------------------------------------


class ModelDrafter(Drafter):
    """Drafts with the draft model on its own cache (``spec.dcache``)."""

    def forward(self, ids: list[list[int]], **kw) -> torch.Tensor:
        spec = self.spec
        x = torch.tensor(ids, device=spec.draft.device)
        return spec.draft.model(x, cache=spec.dcache, **kw)[0, :, : spec.vocab]

    def pending(self) -> torch.Tensor:
        """Feed the draft whatever context it lacks (normally just the root); its logits at the root."""
        spec = self.spec
        return self.forward([spec.context[spec.dcache.length :]], last_only=True)[-1]


class ChainDrafter(ModelDrafter):
    def draft(self, depth: int) -> Draft:
        """γ draft tokens, sampled from q (sample rule) or its argmax; each but the last is fed back."""
        tokens, qs, dists, fed = [], [], [], {}
        logits = self.pending()
        for i in range(depth):
            tok, probs = self.draw(logits)
            tokens.append(tok)
            qs.append(float(probs[tok]))
            dists.append(probs)
            if i < depth - 1:
                fed[i] = self.spec.dcache.length
                logits = self.forward([[tok]])[-1]
        return Draft.chain(tokens, qs, dists, fed=fed, calls=depth)


class TreeDrafter(ModelDrafter):
    def draft(self, depth: int) -> Draft:
        """EAGLE-2 dynamic tree: per depth, expand the ``tree_topk`` best frontier nodes (by cumulative draft
        log-probability) into their top-k children in one masked draft forward; finally keep the best
        ``tree_budget`` nodes. Children are deterministic (q = δ for acceptance)."""
        spec = self.spec
        opt, dc = spec.opt, spec.dcache
        root_slot = len(spec.context) - 1
        pool = TreePool(opt.tree_topk, spec.probs(self.pending()))
        fed: dict[int, int] = {}  # pool node -> draft cache slot

        def children(expand: list[int]) -> torch.Tensor:
            mask = pool.mask(expand, dc.length, root_slot + 1, fed)
            pos = torch.tensor([root_slot + pool.dep[n] for n in expand], device=spec.draft.device)
            return spec.probs(self.forward([[pool.tok[n] for n in expand]], position_ids=pos, mask=mask))

        calls = pool.grow_tree(depth, children)
        order, tokens, parent, qs, dists = pool.keep(opt.tree_budget)
        index = {n: i for i, n in enumerate(order)}
        fed_tree = {index[n]: s for n, s in fed.items() if n in index}
        return Draft(tokens, parent, qs, dists, fed_tree, calls)


# -- prompt lookup ---------------------------------------------------------------------------------------------


class LookupDrafter(Drafter):
    """Prompt lookup; where no n-gram matches, the ``fallback`` heads (if any) guess instead."""

    def __init__(self, spec: Speculator, fallback: HeadsDrafter | None = None):
        super().__init__(spec)
        self.fallback = fallback

    @property
    def max_nodes(self) -> int:
        return max(self.spec.opt.max_nodes, self.fallback.max_nodes if self.fallback is not None else 0)

    def draft(self, depth: int) -> Draft:
        tokens = continuation(self.spec.context, self.spec.lookup_match(self.spec.opt.lookup_ngram), depth)
        if not tokens and self.fallback is not None:
            return self.fallback.draft(depth)
        return Draft.chain(tokens, [1.0] * len(tokens), [None] * len(tokens))


# -- heads on the target (source = the head / module / depth that proposed each node) ----------------------------


class HeadsDrafter(Drafter):
    """Drafts with heads on the target from its features (``spec.feats``), through the target's LM head
    restricted to the heads' draft vocabulary when they have one."""

    def __init__(self, spec: Speculator):
        super().__init__(spec)
        self.heads = spec.heads
        vocab_ids = self.heads.draft_vocab
        self.draft_ids = torch.tensor(vocab_ids, device=spec.target.device) if vocab_ids else None
        self.draft_list = list(vocab_ids) if vocab_ids else None

    def lm_head(self) -> torch.Tensor:
        """The LM-head rows the heads draft with: the whole (common) vocabulary, or the heads' draft vocabulary
        (a contiguous copy, made once per head set and target; in float16 where the heads multiply in it, as the
        whole vocabulary too: the demo Medusa heads' one-row product over 4,096 float32 rows was two thirds of
        their drafting)."""
        weight = self.spec.target.model.lm_head.weight
        half = self.heads.module.half_weights
        if self.draft_ids is None and not half:
            return weight[: self.spec.vocab]
        cached = self.heads.lm_rows
        if cached is None or cached[0] is not weight:
            rows = weight.index_select(0, self.draft_ids) if self.draft_ids is not None else weight[: self.spec.vocab]
            if half:  # multiplied like the heads' own weights
                rows = rows.to(torch.float16)
            cached = self.heads.lm_rows = (weight, rows.contiguous())
        return cached[1]

    def token(self, i: int) -> int:
        """The token id of entry ``i`` of a head's distribution (one over the draft vocabulary, when it has one)."""
        return self.draft_list[i] if self.draft_list is not None else i

    def full_dists(self, dists: list) -> list:
        """Draft-vocabulary distributions put back on the whole vocabulary (0 elsewhere), for what reads them
        there: the records' top entries (detail) and speculative sampling's residual. Not needed otherwise."""
        opt = self.spec.opt
        if self.draft_ids is None or not (opt.detail or opt.accept == "sample"):
            return dists
        out = []
        for q in dists:
            full = q.new_zeros(self.spec.vocab)
            full[self.draft_ids] = q
            out.append(full)
        return out

    def draft(self, depth: int) -> Draft:
        if len(self.spec.context) < 2:  # no feature before the root yet
            return Draft(source=[])
        return self.draft_heads(depth)

    def draft_heads(self, depth: int) -> Draft:
        raise NotImplementedError


class MedusaDrafter(HeadsDrafter):
    """Medusa's static tree: path (r1, .., rd) is the r_d-th best token of head d under the node (r1..r_{d-1})."""

    def __init__(self, spec: Speculator):
        super().__init__(spec)
        self._spelled: str | None = None
        self._choices: list[tuple[int, ...]] = []
        self.choices  # noqa: B018 (checked at once)

    @property
    def choices(self) -> list[tuple[int, ...]]:
        """The step's tree: ``--medusa-tree`` (or the shape chooser's), or the one tuned with the heads ("tuned")."""
        heads, spelled = self.heads, self.spec.opt.medusa_tree
        if spelled != self._spelled:
            paths = parse_choices(spelled) if spelled not in ("", "tuned") else heads.medusa_choices()
            self._choices = sorted(paths, key=lambda c: (len(c), c))
            self._spelled = spelled
            if max(len(c) for c in self._choices) > heads.count:
                raise ExplorerError(f"the medusa tree is deeper than the {heads.count} heads of {heads.name}")
        return self._choices

    @property
    def max_nodes(self) -> int:
        return len(self.choices)

    def draft_heads(self, depth: int) -> Draft:
        """All heads read the feature that predicted the root; one LM-head product for all of them."""
        spec = self.spec
        L = len(spec.context) - 1
        deepest = max(len(c) for c in self.choices if len(c) <= depth)
        probs = spec.probs(self.heads.module.logits(spec.feats[L - 1], self.lm_head(), deepest))  # [K, vocabulary]
        choices = self.choices
        need = 1 + max(c[-1] for c in choices)
        top = torch.topk(probs, min(need, probs.shape[-1]), dim=-1).indices.tolist()
        index: dict[tuple[int, ...], int] = {}
        d = Draft(calls=1, source=[], rank=[])
        for c in choices:
            if len(c) > depth:
                continue
            k = len(c) - 1
            i = top[k][c[-1]]
            index[c] = len(d.tokens)
            d.tokens.append(self.token(i))
            d.parent.append(index[c[:-1]] if k else -1)
            d.q.append(float(probs[k, i]))
            d.dists.append(probs[k])
            d.source.append(k)
            d.rank.append(c[-1])
        d.dists = self.full_dists(d.dists)
        return d


class MtpDrafter(HeadsDrafter):
    def draft_heads(self, depth: int) -> Draft:
        """A chain through the sequential MTP modules: module k joins module k−1's state (the target's feature
        for k = 1) with the embedding of the token before, and predicts the next one."""
        spec = self.spec
        L = len(spec.context) - 1
        embed, lm = spec.target.model.model.embed_tokens.weight, self.lm_head()
        h, prev = spec.feats[L - 1], spec.context[-1]
        tokens, qs, dists = [], [], []
        for module in list(self.heads.module)[:depth]:
            h, out = module(h, embed[prev])
            i, probs = self.draw(lm_logits(out, lm))
            prev = self.token(i)
            tokens.append(prev)
            qs.append(float(probs[i]))
            dists.append(probs)
        n = len(tokens)
        return Draft.chain(tokens, qs, self.full_dists(dists), calls=n, source=list(range(n)))


class EagleDrafter(HeadsDrafter):
    """EAGLE-2 on EAGLE's own cache (``spec.ecache``), whose entry t joins the target's feature t with token t + 1
    (filled up to the root's predecessor between steps)."""

    @property
    def max_nodes(self) -> int:
        return self.spec.opt.tree_budget

    def feed(self, start: int, end: int) -> torch.Tensor:
        """Feed EAGLE's cache its entries start .. end − 1 (the target's feature t with the embedding of token
        t + 1, at position t) in one forward; EAGLE's predicted features there."""
        spec = self.spec
        dev, (cos, sin), eagle, ec = spec.target.device, spec.erope, self.heads.module, spec.ecache
        ec.truncate(start)
        embed = spec.target.model.model.embed_tokens.weight
        if end - start == 1 and eagle.can_forward_one:  # the root's entry alone (the last step accepted nothing)
            emb = embed[spec.context[end]]
            return eagle.forward_one(spec.feats[start], emb, cos[0, 0, start], sin[0, 0, start], ec)[None]
        ids = torch.tensor(spec.context[start + 1 : end + 1], dtype=torch.long, device=dev)
        emb = embed[ids]
        rope = (cos[:, :, start:end], sin[:, :, start:end])
        return eagle(spec.feats[start:end][None], emb[None], None, cache=ec, rope=rope)[0]

    def draft_heads(self, depth: int) -> Draft:
        """Feed EAGLE's cache the real features it lacks (ending with the root's entry) in one forward, then grow
        the tree as :class:`TreeDrafter` does, each depth one forward of EAGLE on its own predicted features;
        finally drop the drafted entries (the next step feeds the real ones). Distributions stay on the draft
        vocabulary until the end."""
        spec = self.spec
        ec, opt = spec.ecache, spec.opt
        L = len(spec.context) - 1  # the root's position
        lm = self.lm_head()
        out = self.feed(min(ec.length, L - 1), L)  # at least the root's entry: its output, the root's feature
        feat = {-1: out[-1]}  # node -> EAGLE's predicted feature at the node (its children's distribution)
        pool = TreePool(opt.tree_topk, spec.probs(lm_logits(out[-1], lm)), self.draft_list)
        slot: dict[int, int] = {}

        def children(expand: list[int]) -> torch.Tensor:
            out = self._depth_forward(pool, expand, feat, slot, L)
            feat.update(zip(expand, out, strict=True))
            return spec.probs(lm_logits(out, lm))

        calls = pool.grow_tree(depth, children)
        ec.truncate(L)
        order, tokens, parent, qs, dists = pool.keep(opt.tree_budget)
        return Draft(tokens, parent, qs, self.full_dists(dists), calls=calls, source=[pool.dep[n] - 1 for n in order])

    def _depth_forward(self, pool: TreePool, expand: list[int], feat: dict, slot: dict, L: int) -> torch.Tensor:
        """One depth's EAGLE forward over the nodes ``expand`` (all at one position), on their parents' predicted
        features: masked to the ancestors, unless the tree is a chain so far."""
        spec = self.spec
        eagle, ec, dev = self.heads.module, spec.ecache, spec.target.device
        embed, (cos, sin) = spec.target.model.model.embed_tokens.weight, spec.erope
        p = L - 1 + pool.dep[expand[0]]  # all of this depth's nodes sit at one position
        n = expand[0]
        if len(expand) == 1 and len(slot) == pool.dep[n] - 1 and eagle.can_forward_one:
            # A chain so far (one node fed per depth, so all of them ancestors): one query over the whole
            # cache, no mask, in EAGLE's lean one-entry forward.
            slot[n] = ec.length
            return eagle.forward_one(feat[pool.par[n]], embed[pool.tok[n]], cos[0, 0, p], sin[0, 0, p], ec)[None]
        mask = pool.mask(expand, ec.length, L, slot, device=dev)  # the real entries 0 .. L - 1
        f_in = torch.stack([feat[pool.par[n]] for n in expand])[None]
        e_in = embed[torch.tensor([pool.tok[n] for n in expand], device=dev)][None]
        rope = (cos[:, :, p : p + 1], sin[:, :, p : p + 1])
        return eagle(f_in, e_in, None, cache=ec, mask=mask, rope=rope)[0]


HEAD_DRAFTERS: dict[str, type[HeadsDrafter]] = {"medusa": MedusaDrafter, "eagle": EagleDrafter, "mtp": MtpDrafter}
MODEL_DRAFTERS: dict[str, type[Drafter]] = {"chain": ChainDrafter, "tree": TreeDrafter}


def make_drafters(spec: Speculator) -> tuple[Drafter, HeadsDrafter | None]:
    """The strategy of ``spec``'s method, and the heads' own strategy when heads are loaded (a head method's,
    or the one prompt lookup falls back on)."""
    heads = HEAD_DRAFTERS[spec.heads.kind](spec) if spec.heads is not None else None
    method = spec.opt.method
    if method == "lookup":
        return LookupDrafter(spec, fallback=heads), heads
    if method in HEAD_DRAFTERS:
        return heads, heads
    return MODEL_DRAFTERS[method](spec), heads


class TreePool:
    """EAGLE-2's pool of candidates: each node a token with its parent, depth and draft log-probability, scored by
    the cumulative log-probability of its path. Per depth the best ``k`` frontier nodes are expanded into their
    top-``k`` children (a global top-k), and at the end the best ``budget`` nodes are kept."""

    def __init__(self, k: int, root_probs: torch.Tensor, vocab: list[int] | None = None):
        """``vocab``: the token id of each entry of the distributions (a draft vocabulary), None for the whole
        vocabulary; the distributions are kept as given."""
        self.k = k
        self.vocab = vocab
        self.tok: list[int] = []
        self.par: list[int] = []
        self.dep: list[int] = []
        self.logq: list[float] = []
        self.score: list[float] = []
        self.dist: dict[int, torch.Tensor] = {-1: root_probs}  # node -> the draft distribution over its children

    def add_children(self, node: int, probs: torch.Tensor, depth: int) -> list[int]:
        base = self.score[node] if node >= 0 else 0.0
        v, i = torch.topk(probs, min(self.k, probs.shape[-1]))
        out = []
        for pv, ti in zip(v.tolist(), i.tolist(), strict=True):
            if pv <= 0:
                break
            if self.vocab is not None:
                ti = self.vocab[ti]
            self.tok.append(ti), self.par.append(node), self.dep.append(depth), self.logq.append(math.log(pv))
            self.score.append(base + math.log(pv))
            out.append(len(self.tok) - 1)
        return out

    def best(self, nodes: list[int]) -> list[int]:
        """The k highest-scoring of ``nodes``, best first."""
        return sorted(nodes, key=lambda n: -self.score[n])[: self.k]

    def mask(self, expand: list[int], base: int, prefix: int, slot: dict[int, int], device=None) -> torch.Tensor:
        """Attention mask of one depth's forward over ``expand`` (written at cache slots base, base + 1, ...):
        each row sees the ``prefix`` real entries, its ancestors' slots and itself; records the new slots."""
        mask = torch.zeros(len(expand), base + len(expand), dtype=torch.bool, device=device)
        mask[:, :prefix] = True
        for j, n in enumerate(expand):
            mask[j, base + j] = True
            a = self.par[n]
            while a >= 0:
                mask[j, slot[a]] = True
                a = self.par[a]
            slot[n] = base + j
        return mask

    def grow(self, n: int, probs: torch.Tensor, depth: int, frontier: list[int]) -> None:
        """Node ``n``'s children from its draft distribution, appended to ``frontier``."""
        self.dist[n] = probs
        frontier += self.add_children(n, probs, depth)

    def grow_tree(self, depth: int, children: Callable[[list[int]], torch.Tensor]) -> int:
        """The root's children, then per depth 2..``depth`` the best frontier nodes expanded in one forward:
        ``children(expand)`` returns their draft distributions (one row per node, in ``expand``'s order). Returns
        the number of forwards, the root's included."""
        calls = 1
        frontier = self.add_children(-1, self.dist[-1], 1)
        for d in range(2, depth + 1):
            expand = sorted(self.best(frontier))
            if not expand:
                break
            probs = children(expand)
            calls += 1
            frontier = []
            for j, n in enumerate(expand):
                self.grow(n, probs[j], d, frontier)
            frontier = self.best(frontier)  # EAGLE-2: a global top-k per depth
        return calls

    def keep(self, budget: int) -> tuple[list[int], list[int], list[int], list[float], list[torch.Tensor]]:
        """Rerank: the best ``budget`` nodes (a child never outscores its parent, so the set is ancestor-closed),
        parents first: (pool nodes kept, tokens, parent index, q of each token, the distribution it came from)."""
        best = sorted(range(len(self.tok)), key=lambda n: (-self.score[n], self.dep[n], n))[:budget]
        order = sorted(best, key=lambda n: (self.dep[n], n))
        index = {n: i for i, n in enumerate(order)}
        tokens = [self.tok[n] for n in order]
        parent = [index[self.par[n]] if self.par[n] >= 0 else -1 for n in order]
        qs = [math.exp(self.logq[n]) for n in order]
        dists = [self.dist[self.par[n]] for n in order]
        return order, tokens, parent, qs, dists


def lookup_continuation(context: list[int], n_max: int, length: int) -> list[int]:
    """Prompt lookup: the tokens that followed the latest earlier occurrence of the context's last n-gram
    (longest n first, n_max down to 1); empty when there is none."""
    return continuation(context, lookup_match(context, n_max), length)


def continuation(context: list[int], match: tuple[int, int], length: int) -> list[int]:
    """The ``length`` tokens after a :func:`lookup_match` ``match`` (empty when nothing matched)."""
    n, start = match
    return context[start : start + length] if n else []


def lookup_match(context: list[int], n_max: int) -> tuple[int, int]:
    """The longest n <= n_max whose last n-gram occurred earlier in the context (0 if none), and where the tokens
    after its latest earlier occurrence start."""
    arr = np.asarray(context, dtype=np.int64)
    size = len(arr)
    for n in range(min(n_max, size - 1), 0, -1):
        suffix = arr[size - n :]
        windows = np.lib.stride_tricks.sliding_window_view(arr[: size - 1], n)  # starts 0 .. size - 1 - n
        hits = np.flatnonzero((windows == suffix).all(axis=1))
        if len(hits):
            return n, int(hits[-1]) + n
    return 0, 0
