"""Speculative decoding, one step at a time, on a loaded target + draft pair (Qt-free).

A step drafts candidates, verifies them all with ONE target forward, decides which to accept, and rolls both KV
caches back to exactly the accepted path. Each way to draft is a strategy of explorer/speculative/drafters.py
returning a ``Draft``; with a draft model or none:

- ``chain``: γ tokens from the draft model, one after the other (gpt-fast).
- ``tree``: a dynamic token tree from the draft model (EAGLE-2): expand the ``tree_topk`` children of the most
  confident nodes of each depth (by cumulative draft log-probability), keep a global top-k per depth, then keep the
  ``tree_budget`` best nodes of all depths. Nodes of one depth are drafted in one draft forward with a tree mask.
- ``lookup``: prompt lookup; the tokens that followed the latest earlier occurrence of the context's last n-gram
  (no draft model).
- ``medusa``, ``eagle``, ``mtp``: heads on the target's own features (explorer/speculative/heads.py); prompt lookup
  falls back on them where no n-gram matches.

Verification: one target forward over ``[last accepted token, nodes...]``; each node sees the prefix, its ancestors
and itself (tree attention mask) at position ``prefix_len + depth`` (the root, the last accepted token, is depth 0).

Acceptance rules, walked from the root down ("p" = target, "q" = draft, as in Leviathan et al.; both after the
same temperature / top-k):

- ``greedy``: accept the child equal to the target's argmax. Lossless: the output equals plain greedy decoding.
- ``sample`` (lossless). A chain drafted by *sampling* the draft: accept x with probability min(1, p(x)/q(x)); on
  the first rejection sample from norm(max(0, p − q)); if all γ are accepted, sample a bonus token from p.
  Candidates chosen deterministically (tree top-k children, lookup tokens) have q = δ_x (a point mass), so the same
  rule reads: try the children in turn, accept child x with probability p'(x), and on rejection set p'(x) = 0 and
  renormalise (p' starts as p) — the rejected candidate's mass leaves the residual before the next sibling is tried
  (SpecInfer / EAGLE); if every child is rejected, sample from p'. This samples exactly from p.
- ``typical`` (Medusa; NOT lossless): accept the first child x with p(x) > min(ε, δ·exp(−H(p))) (ε = 0.09,
  δ = 0.3); the token after the accepted path is then the argmax of p (temperature 0) or a sample from p.

Invariant between steps: the target cache holds the context minus its last token (the next step's root), slot =
position; the draft cache holds a prefix of that. What the draft lacks (after a fully accepted chain: the last draft
token, which it never saw as input) is fed together with the next root in that step's first draft forward, so the
catch-up costs no extra forward (gpt-fast spends one).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..models.checkpoint import LoadedModel
from ..models.generate import check_length, generate, next_token_probs
from ..session import check_same_tokenizer
from .costs import run_costs
from .drafters import Draft, lookup_match, make_drafters
from .heads import Heads
from .lookup_first import AFTER_LOOKUP, SHORT, LookupFirst
from .records import HEAD_METHODS, Decision, DraftTree, SpecOptions, StepRecord, TargetOnly
from .shape import NO_SPECULATION, make_chooser
from .stats import SpecResult, compute_stats


def _top(probs: torch.Tensor, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    v, i = torch.topk(probs, min(n, probs.shape[-1]))
    return i.cpu().numpy().astype(np.int64), v.float().cpu().numpy()


def _texts(lm: LoadedModel, ids) -> list[str]:
    if lm.tokenizer is None:
        return [str(int(i)) for i in ids]
    return [lm.decode([int(i)]) for i in ids]


def _compact(cache, prefix: int, slots: list[int]) -> None:
    """Keep slots [0, prefix) and then ``slots`` (increasing, all >= prefix), compacted to the front."""
    if slots == list(range(prefix, prefix + len(slots))):
        cache.truncate(prefix + len(slots))  # a contiguous run: rollback is free
    else:
        cache.keep(list(range(prefix)) + slots)


def _no_tree(heads: bool) -> DraftTree:
    """The tree of a step that drafted nothing (heads' trees name each node's source: none here)."""
    empty = np.zeros(0, dtype=np.int64)
    return DraftTree(empty, empty.copy(), empty.copy(), np.zeros(0, dtype=np.float32), [],
                     empty.copy() if heads else None)  # fmt: skip


def tree_mask(parent: list[int]) -> torch.Tensor:
    """[N + 1, N + 1] bool over [root, nodes...]: each node sees the root, its ancestors and itself."""
    n = len(parent)
    mask = torch.eye(n + 1, dtype=torch.bool)
    mask[:, 0] = True
    for i, p in enumerate(parent):
        if p >= 0:
            mask[i + 1] |= mask[p + 1]
    return mask


def verify(model, cache, root: int, tokens: list[int], parent: list[int], features: list | None = None):
    """ONE target forward over [root, nodes...] appended to ``cache`` (whose length is the root's position).
    Not a torch.inference_mode function of its own: entering that mode costs a step about 70 µs on this CPU
    (the step runs in it already).

    A chain runs causally; a tree gets :func:`tree_mask` and position ids ``root position + depth``.
    Returns (logits [N + 1, V], mask or None, position ids [N + 1], node depths [N]); ``features`` receives the
    target's features [1, N + 1, d] when given."""
    n, start = len(tokens), cache.length
    depth = np.zeros(n, dtype=np.int64)
    for i, p in enumerate(parent):
        depth[i] = 1 if p < 0 else depth[p] + 1
    position_ids = start + np.concatenate([[0], depth])
    dev = model.lm_head.weight.device
    ids = torch.tensor([[root] + list(tokens)], device=dev)
    mask = pos = None
    if not all(p == i - 1 for i, p in enumerate(parent)):
        mask = tree_mask(parent)
        pos = torch.as_tensor(position_ids, device=dev)
    logits, feats = model(ids, position_ids=pos, cache=cache, mask=None if mask is None else mask.to(dev),
                          features=True)  # fmt: skip
    if features is not None:
        features.append(feats)
    return logits[0], mask, position_ids, depth


def _node_depths(parent: list[int]) -> list[int]:
    depth: list[int] = []
    for p in parent:
        depth.append(1 if p < 0 else depth[p] + 1)
    return depth


@dataclass
class Verified:
    """The target's verification of a draft: its distributions after the root and after each node."""

    logits: torch.Tensor  # [N + 1, vocabulary]
    probs: torch.Tensor  # the same after temperature / top-k
    argmax: torch.Tensor  # [N + 1]
    p_nodes: np.ndarray  # float32 [N]: the target probability of each node's token given its parent
    mask: torch.Tensor | None  # the tree mask (None: a causal chain)
    position_ids: np.ndarray
    depth: np.ndarray  # of each node
    features: torch.Tensor  # the target's features over [root, nodes...]
    slots: int  # the target cache's length right after the forward
    forward_seconds: float  # the forward alone


@dataclass
class Walk:
    """What the acceptance walk decided: the accepted path, each decision, the node whose rejection ended it
    (None: it reached a leaf), the token after the path (corrected or bonus) and what it was sampled from."""

    path: list[int] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    rejected: int | None = None
    token: int | None = None
    residual: tuple[np.ndarray, np.ndarray] | None = None
    residual_token: int | None = None
    bonus: int | None = None


@dataclass
class Commit:
    """What a step keeps: the new tokens with their origins, and the cache slots kept (from the root on)."""

    new: list[int]
    origins: list[str]
    in_cache: list[int]  # the accepted nodes whose keys and values stay (the last new token is the next root)
    target_kept: list[int]
    draft_kept: list[int] = field(default_factory=list)


class Speculator:
    """Holds the two caches and the context; :meth:`step` runs one draft → verify → accept → commit round, each
    phase a method; drafting is the method's strategy (explorer/speculative/drafters.py).

    Options that leave the draft's shape to choose (gamma, tree depth / top-k / budget 0, Medusa tree "") get a
    :class:`~explorer.speculative.shape.ShapeChooser`: each step drafts the shape expected to yield the most tokens
    per second on this machine (``curve``: its verification-cost curve, else the cached one), learnt from the run
    as it goes (``timing``: also from its clock; off in recordings). ``asked`` keeps the options as given, ``opt``
    is the step's own."""

    def __init__(
        self,
        target: LoadedModel,
        draft: LoadedModel | None,
        prompt_ids: list[int],
        max_new_tokens: int,
        options: SpecOptions | None = None,
        heads: Heads | None = None,
        curve: dict | None = None,
        timing: bool = True,
    ):
        self.asked = self.opt = opt = options or SpecOptions()
        if opt.method in ("lookup", *HEAD_METHODS):
            draft = None
        opt.check(draft is not None, heads.kind if heads is not None else None)
        # Heads draft for their own method, and for prompt lookup when no n-gram matches (a fallback).
        self.heads = heads if opt.method in (*HEAD_METHODS, "lookup") else None
        self.target, self.draft = target, draft
        own_heads = self.heads if opt.method in HEAD_METHODS else None
        self.context = list(prompt_ids)
        self._match: tuple = (None, (0, 0))  # (context length, n-gram limit) and lookup_match's answer for them
        self.chooser = make_chooser(opt, target, draft, own_heads, curve, timing)
        if self.chooser is not None and opt.method == "lookup" and self.heads is not None:
            # lookup with heads: each step with a continuation drafts with the one expected to pay more
            heads_chooser = make_chooser(replace(opt, method=self.heads.kind), target, None, self.heads, curve, timing,
                                         tag=AFTER_LOOKUP)
            if heads_chooser is not None:
                short = make_chooser(opt, target, None, None, curve, timing, tag=SHORT)  # 1-gram continuations
                self.chooser = LookupFirst(self.chooser, heads_chooser, self._matched, short)
        self.drafter, self.heads_drafter = make_drafters(self)  # (the method as asked)
        self.shape, self.probe = NO_SPECULATION, False
        self._shaped: dict = {}  # (drafter, shape) -> the options it drafts with (made once per shape)
        if self.chooser is not None:
            self._next_shape(0)
        self._choose = {"greedy": self._choose_greedy, "typical": self._choose_typical,
                        "sample": self._choose_sample}[opt.accept]  # fmt: skip
        if draft is not None and target.tokenizer is not None and draft.tokenizer is not None:
            check_same_tokenizer(target, draft)  # tokenizers decide, not vocab sizes (padding)
        check_length(target, len(prompt_ids), max_new_tokens)
        # Padded vocabularies (e.g. 151936 vs 152064): the same tokenizer, extra rows never used; compare on the
        # common part.
        self.vocab = min(target.config.vocab_size, draft.config.vocab_size if draft else target.config.vocab_size)
        self.n_prompt, self.max_new_tokens = len(prompt_ids), max_new_tokens
        self.steps = 0
        self.done = max_new_tokens <= 0
        self.gen = torch.Generator(device=target.device)
        self.gen.manual_seed(opt.seed)
        self.max_nodes = max(self.drafter.max_nodes, self.chooser.max_nodes if self.chooser is not None else 0)
        slots = len(prompt_ids) + max_new_tokens + self.max_nodes + 2
        self.tcache = target.model.new_cache(slots)
        self.dcache = draft.model.new_cache(slots) if draft is not None else None
        # Heads: the target's feature at every position in the cache (slot = position), and EAGLE's own cache,
        # whose entry t joins feature t with token t + 1 (filled up to the root's predecessor).
        self.feats = self.ecache = None
        if self.heads is not None:
            self.feats = torch.zeros(slots, target.config.hidden_size, dtype=target.dtype, device=target.device)
            if self.heads.kind == "eagle":
                self.ecache = self.heads.module.new_cache(slots + self.max_nodes)
                self.erope = self.heads.module.rope_table(slots + self.max_nodes)
        self._prefill(prompt_ids)

    @torch.inference_mode()
    def _prefill(self, prompt_ids: list[int]) -> None:
        """Every cache gets the prompt but its last token (the first step's root)."""
        target = self.target
        head = torch.tensor([prompt_ids[:-1]], device=target.device)
        if not head.shape[1]:
            return
        feats = target.model(head, cache=self.tcache, last_only=self.ecache is None, logits=False)
        if self.feats is not None:
            self.feats[head.shape[1] - feats.shape[1] : head.shape[1]] = feats[0]
        if self.ecache is not None and head.shape[1] > 1:
            # EAGLE's prefill, as the draft model's below: entries 0 .. n − 3 (feature t with token t + 1);
            # drafting adds the root's entry n − 2.
            self.heads_drafter.feed(0, head.shape[1] - 1)
        if self.dcache is not None:
            self.draft.model(head.to(self.draft.device), cache=self.dcache, last_only=True, logits=False)

    @property
    def new_tokens(self) -> list[int]:
        return self.context[self.n_prompt :]

    def rewind(self, length: int) -> None:
        """Go back to the first ``length`` tokens of the context (>= the prompt): both caches are truncated."""
        if not self.n_prompt <= length <= len(self.context):
            raise ValueError(f"cannot rewind to {length} tokens")
        del self.context[length:]
        self._match = (None, (0, 0))
        self.tcache.truncate(length - 1)
        if self.dcache is not None:
            self.dcache.truncate(min(self.dcache.length, length - 1))
        if self.ecache is not None:
            self.ecache.truncate(min(self.ecache.length, length - 1))
        self.done = False

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Distributions after the run's temperature and top-k (the target's and the drafts' alike)."""
        return next_token_probs(logits, self.opt.temperature, self.opt.top_k)

    # -- one step: draft, verify, accept, commit, record ----------------------------------------------------

    @torch.inference_mode()
    def step(self) -> StepRecord:
        if self.done:
            raise ValueError("speculation is finished")
        L = len(self.context) - 1  # the root's slot and position
        root = self.context[-1]
        remaining = self.max_new_tokens - len(self.new_tokens)
        if self.chooser is not None and self.steps:
            self._next_shape(self.steps)
        planned = self.opt.depth if self.chooser is None or self.shape.depth else 0
        depth = min(planned, remaining - 1)  # never draft past max_new_tokens
        if depth <= 0:
            return self._finish(self._plain_step(L, root, remaining), None)
        t0 = time.perf_counter()
        drafter = self.heads_drafter if self.opt.method in HEAD_METHODS else self.drafter
        draft = drafter.draft(depth)
        t1 = time.perf_counter()
        verified = self._verify(root, draft)
        walk = self._accept(draft, verified)
        commit = self._commit_target(L, remaining, draft, walk, verified)
        t2 = time.perf_counter()
        commit.draft_kept = self._commit_draft(L, draft, commit)
        t3 = time.perf_counter()
        record = self._record(L, root, draft, verified, walk, commit)
        record.draft_seconds = (t1 - t0) + (t3 - t2)
        record.verify_seconds = t2 - t1 + (time.perf_counter() - t3)  # building this record is bookkeeping too
        record.forward_seconds = verified.forward_seconds
        return self._finish(record, draft)

    def _next_shape(self, step: int) -> None:
        """The chooser's shape for ``step`` and the options it drafts with (with lookup first, the drafter's own)."""
        self.shape, self.probe = self.chooser.shape_for(step)
        method = self.chooser.method  # (lookup first: the step's drafter; else the method as asked)
        key = (method, self.shape)
        if key not in self._shaped:
            self._shaped[key] = self.shape.options(replace(self.asked, method=method))
        self.opt = self._shaped[key]

    def _matched(self) -> int:
        """The n-gram prompt lookup matched for the next step (0: no continuation)."""
        return self.lookup_match(self.asked.lookup_ngram)[0]

    def lookup_match(self, n_max: int) -> tuple[int, int]:
        """lookup_match on the context, scanned once per context: with lookup first the chooser asks for the match
        (which drafter) and then lookup drafts from it. The context only grows between rewinds, which forget it."""
        key = (len(self.context), n_max)
        if self._match[0] != key:
            self._match = (key, lookup_match(self.context, n_max))
        return self._match[1]

    def _finish(self, record: StepRecord, draft: Draft | None) -> StepRecord:
        if self.chooser is not None:
            self.chooser.observe(draft, record)
            record.shape = self._shape_note()
        self.steps += 1
        return record

    def _plain_step(self, L: int, root: int, remaining: int) -> StepRecord:
        """A step that drafts nothing is a decode step: one forward of the root, the target's argmax (or a draw
        from its distribution) as the one new token. The general step's record without its walk; its few
        operations keep the fallback to plain decoding as fast as the target alone."""
        t0 = time.perf_counter()
        ids = torch.tensor([[root]], device=self.target.device)
        logits, feats = self.target.model(ids, cache=self.tcache, features=True)
        t1 = time.perf_counter()
        logits = logits[0, -1, : self.vocab]
        argmax = int(logits.argmax())
        opt = self.opt
        if opt.accept == "sample" or (opt.accept == "typical" and opt.temperature > 0):
            token = int(torch.multinomial(self.probs(logits), 1, generator=self.gen))
        else:
            token = argmax
        done = (opt.stop_at_eos and token in self.target.eos_token_ids) or remaining <= 1
        self.done = self.done or done
        self.context.append(token)
        if self.feats is not None:
            self.feats[L] = feats[0, -1]
        record = StepRecord(
            step=self.steps, context_len=L + 1, root_token=root, tree=_no_tree(self.heads is not None),
            p=np.zeros(0, dtype=np.float32),
            target_argmax=np.array([argmax], dtype=np.int64), mask=None, position_ids=np.array([L], dtype=np.int64),
            decisions=[], accepted=[], rejected=None, residual_top_ids=None, residual_top_probs=None,
            residual_token=None, bonus_token=token, new_tokens=[token], origins=["bonus"],
            target_slots_verified=self.tcache.length, target_slots_kept=[L],
            draft_slots_kept=[], draft_calls=0, draft_seconds=0.0,
            verify_seconds=time.perf_counter() - t0, forward_seconds=t1 - t0,
        )  # fmt: skip
        return record

    def _shape_note(self) -> dict:
        """The shape this step drafted with, and why it changed here (the chooser's reason) if it did."""
        changes = self.chooser.changes
        change = changes[-1] if changes and changes[-1]["step"] == self.steps + 1 else None
        note = {**self.shape.as_dict(), "probe": self.probe, "change": change}
        if isinstance(self.chooser, LookupFirst):
            note["drafter"] = self.chooser.method
        return note

    def _verify(self, root: int, draft: Draft) -> Verified:
        """ONE target forward over [root, nodes...]: the target's distributions after the root and each node."""
        t0 = time.perf_counter()
        feats_out: list = []
        logits, mask, position_ids, depth = verify(self.target.model, self.tcache, root, draft.tokens, draft.parent,
                                                   feats_out)  # fmt: skip
        forward_seconds = time.perf_counter() - t0
        logits = logits[:, : self.vocab]
        dev = self.target.device
        argmax = logits.argmax(dim=-1)
        probs = self.probs(logits)  # [N + 1, V], the target distributions after the root and after each node
        node_rows = torch.tensor([p + 1 for p in draft.parent], dtype=torch.long, device=dev)
        tok_t = torch.tensor(draft.tokens, dtype=torch.long, device=dev)
        p_nodes = probs[node_rows, tok_t].float().cpu().numpy() if draft.tokens else np.zeros(0, np.float32)
        return Verified(logits, probs, argmax, p_nodes, mask, position_ids, depth, feats_out[0], self.tcache.length,
                        forward_seconds)  # fmt: skip

    def _commit_target(self, L: int, remaining: int, draft: Draft, walk: Walk, verified: Verified) -> Commit:
        """Cut the new tokens at EOS / max_new_tokens; keep exactly the accepted path in the target's cache."""
        new = [draft.tokens[n] for n in walk.path] + [walk.token]
        origins = ["accepted"] * len(walk.path) + ["bonus" if walk.rejected is None else "corrected"]
        if self.opt.stop_at_eos:
            for i, t in enumerate(new):
                if t in self.target.eos_token_ids:
                    new, origins = new[: i + 1], origins[: i + 1]
                    self.done = True
                    break
        if len(new) >= remaining:
            new, origins = new[:remaining], origins[:remaining]
            self.done = True
        self.context += new
        in_cache = walk.path[: len(new) - 1]  # accepted nodes whose keys/values stay (the last new token: root)
        t_kept = [L] + [L + 1 + n for n in in_cache]
        _compact(self.tcache, L, t_kept)
        if self.feats is not None:  # the target's features along the kept path, for the next step's heads
            rows = torch.tensor([0] + [n + 1 for n in in_cache], device=self.target.device)
            self.feats[L : L + len(rows)] = verified.features[0, rows]
        return Commit(new, origins, in_cache, t_kept)

    def _commit_draft(self, L: int, draft: Draft, commit: Commit) -> list[int]:
        """Keep the accepted path's fed nodes in the draft model's cache; the slots kept."""
        if self.dcache is None or self.dcache.length <= L:
            return []
        kept = [L] + [draft.fed[n] for n in commit.in_cache if n in draft.fed]
        _compact(self.dcache, L, kept)
        return kept

    def _record(self, L: int, root: int, draft: Draft, v: Verified, walk: Walk, commit: Commit) -> StepRecord:
        tokens = draft.tokens
        return StepRecord(
            step=self.steps,
            context_len=L + 1,
            root_token=root,
            tree=DraftTree(
                tokens=np.asarray(tokens, dtype=np.int64),
                parent=np.asarray(draft.parent, dtype=np.int64),
                depth=v.depth,
                q=np.asarray(draft.q, dtype=np.float32),
                texts=_texts(self.target, tokens) if self.opt.detail else [],
                source=None if draft.source is None else np.asarray(draft.source, dtype=np.int64),
            ),
            p=v.p_nodes,
            target_argmax=v.argmax.cpu().numpy().astype(np.int64),
            mask=None if v.mask is None else v.mask.numpy(),
            position_ids=v.position_ids,
            decisions=walk.decisions,
            accepted=walk.path,
            rejected=walk.rejected,
            residual_top_ids=None if walk.residual is None else walk.residual[0],
            residual_top_probs=None if walk.residual is None else walk.residual[1],
            residual_token=walk.residual_token,
            bonus_token=walk.bonus,
            new_tokens=commit.new,
            origins=commit.origins,
            target_slots_verified=v.slots,
            target_slots_kept=commit.target_kept,
            draft_slots_kept=commit.draft_kept,
            draft_calls=draft.calls,
            draft_seconds=0.0,
            verify_seconds=0.0,
        )

    # -- the acceptance walk --------------------------------------------------------------------------------

    def _accept(self, draft: Draft, v: Verified) -> Walk:
        """Walk the tree from the root with the chosen rule, one row (the target's distribution after the
        current node) at a time: the first accepted child goes on, else the walk ends with the rule's token."""
        children: dict[int, list[int]] = {}
        for i, p in enumerate(draft.parent):
            children.setdefault(p, []).append(i)
        walk, cur = Walk(), -1
        argmax = v.argmax.tolist()
        while True:
            row = cur + 1
            kids = children.get(cur, [])
            tops = self._tops(v.probs[row], draft, kids)
            nxt = self._choose(walk, draft, kids, v.probs[row], argmax[row], tops)
            if nxt is None:
                if not kids:
                    walk.bonus = walk.token
                    walk.rejected = None
                return walk
            walk.path.append(nxt)
            cur = nxt

    def _tops(self, p_row: torch.Tensor, draft: Draft, kids: list[int]) -> dict:
        """The top entries of the target's and the draft's distributions at the parent (detail only)."""
        if self.opt.detail and kids:
            p_top = _top(p_row)
            q_dist = draft.dists[kids[0]]
            q_top = _top(q_dist) if q_dist is not None else (None, None)
        else:
            p_top = q_top = (None, None)
        return dict(p_top_ids=p_top[0], p_top_probs=p_top[1], q_top_ids=q_top[0], q_top_probs=q_top[1])

    def _choose_greedy(self, walk: Walk, draft: Draft, kids: list[int], p_row, argmax: int, tops: dict):
        """Accept the child equal to the target's argmax; else the argmax is the token."""
        tokens, qs = draft.tokens, draft.q
        for c in kids:
            ok = tokens[c] == argmax
            walk.decisions.append(Decision(c, tokens[c], float(p_row[tokens[c]]), qs[c], float(ok), None, ok, **tops))
            if ok:
                return c
            walk.rejected = c
        walk.token = argmax
        return None

    def _choose_typical(self, walk: Walk, draft: Draft, kids: list[int], p_row, argmax: int, tops: dict):
        """Medusa's: accept the first child with p(x) > min(ε, δ·exp(−H(p))); else the argmax (temperature 0) or a
        sample from p."""
        opt = self.opt
        h = float(-(p_row * torch.log(p_row.clamp_min(1e-30))).sum())
        threshold = min(opt.typical_epsilon, opt.typical_delta * math.exp(-h))
        for c in kids:
            px = float(p_row[draft.tokens[c]])
            ok = px > threshold
            walk.decisions.append(Decision(c, draft.tokens[c], px, draft.q[c], threshold, None, ok, entropy=h, **tops))
            if ok:
                return c
            walk.rejected = c
        walk.token = argmax if opt.temperature <= 0 else int(torch.multinomial(p_row, 1, generator=self.gen))
        return None

    def _choose_sample(self, walk: Walk, draft: Draft, kids: list[int], p_row, argmax: int, tops: dict):
        """Speculative sampling: accept x with probability min(1, p'(x)/q(x)); on a rejection take the draft's
        mass out of the residual p' (a sampled chain: p' − q; a deterministic candidate, q = δ_x: p'(x) = 0);
        when every child is rejected, sample the token from the residual."""
        sampled_chain = self.opt.method in ("chain", "mtp")
        resid = p_row
        for c in kids:
            x = draft.tokens[c]
            px = float(resid[x])
            qx = draft.q[c] if sampled_chain else 1.0  # deterministic candidates: q = δ_x
            ratio = min(1.0, px / qx) if qx > 0 else 1.0
            u = float(torch.rand((), generator=self.gen, device=resid.device))
            ok = u < ratio
            walk.decisions.append(Decision(c, x, px, qx, ratio, u, ok, **tops))
            if ok:
                return c
            walk.rejected = c
            if sampled_chain:
                resid = (resid - draft.dists[c]).clamp_min(0)
            else:
                resid = resid.clone()
                resid[x] = 0
            total = float(resid.sum())
            resid = resid / total if total > 0 else p_row
        walk.token = int(torch.multinomial(resid, 1, generator=self.gen))
        if kids:
            walk.residual, walk.residual_token = _top(resid), walk.token
        return None


def speculate(
    target: LoadedModel,
    draft: LoadedModel | None,
    prompt_ids: list[int],
    max_new_tokens: int,
    options: SpecOptions | None = None,
    heads: Heads | None = None,
) -> Iterator[StepRecord]:
    """One :class:`StepRecord` per speculative step until ``max_new_tokens`` or an end-of-sequence token."""
    spec = Speculator(target, draft, prompt_ids, max_new_tokens, options, heads)
    while not spec.done:
        yield spec.step()


def target_only(target: LoadedModel, prompt_ids: list[int], max_new_tokens: int, options: SpecOptions) -> TargetOnly:
    """The target alone on the same prompt and decoding settings, timed: the baseline of every speculative run."""
    t0 = time.perf_counter()
    o = options
    tokens = generate(target, prompt_ids, max_new_tokens, o.temperature, o.top_k, o.seed, o.stop_at_eos)
    return TargetOnly(tokens, time.perf_counter() - t0)


class TimedSpeculation:
    """One speculative run that keeps its steps and its wall-clock seconds (from the prefill to the last step)
    while it yields them: iterate it once, then ask for its :meth:`stats`."""

    def __init__(self, target: LoadedModel, draft: LoadedModel | None, prompt_ids: list[int], max_new_tokens: int,
                 options: SpecOptions, heads: Heads | None = None, timing: bool = True,
                 curve: dict | None = None):  # fmt: skip
        self.args = (target, draft, prompt_ids, max_new_tokens, options, heads, curve)
        self.target, self.prompt_ids, self.options = target, prompt_ids, options
        self.steps: list[StepRecord] = []
        self.seconds = 0.0
        self.timing = timing  # the shape chooser learns from the clock (off in recordings)
        self.shape: dict | None = None  # the shape chooser's report once the run has ended (None: a fixed shape)

    def __iter__(self) -> Iterator[StepRecord]:
        t0 = time.perf_counter()
        spec = Speculator(*self.args, timing=self.timing)
        while not spec.done:
            record = spec.step()
            self.steps.append(record)
            yield record
        self.seconds = time.perf_counter() - t0
        self.shape = spec.chooser.report() if spec.chooser is not None else None
        if spec.chooser is not None:
            spec.chooser.remember()

    def run(self) -> TimedSpeculation:
        for _ in self:
            pass
        return self

    @property
    def new_tokens(self) -> list[int]:
        return [t for s in self.steps for t in s.new_tokens]

    def stats(self, base: TargetOnly | None = None, runs: list[tuple[float, float]] | None = None) -> dict:
        """:func:`compute_stats` of the run, against ``base`` when given: the speedup is timed by ``runs``
        (alternated timed pairs) when given, else by the baseline's own seconds."""
        new = self.new_tokens
        if base is None:
            return compute_stats(self.steps, len(new), self.seconds, self.options)
        seconds = None if runs else base.seconds
        return compute_stats(self.steps, len(new), self.seconds, self.options, base.tokens, seconds, new, runs=runs)


def run_speculation(
    target: LoadedModel,
    draft: LoadedModel | None,
    prompt_ids: list[int],
    max_new_tokens: int,
    options: SpecOptions | None = None,
    compare: bool = True,
    heads: Heads | None = None,
    runs: int = 3,
    costs: bool = False,
) -> SpecResult:
    """Speculate (the recorded run, which also warms the drafter up), then (``compare``) warm the target up and
    time ``runs`` alternated pairs of target-only and speculative decoding of the same prompt and length: the
    speedup is their median ratio with min and max; at temperature 0 the first divergence from plain greedy is
    reported. ``costs``: also measure this machine's verification-cost curve and where this run stands on it."""
    opt = options or SpecOptions()
    run = TimedSpeculation(target, draft, prompt_ids, max_new_tokens, opt, heads).run()
    base, pairs = None, []
    if compare:
        base = target_only(target, prompt_ids, max_new_tokens, opt)  # warm-up
        pairs = timed_pairs(target, draft, prompt_ids, max_new_tokens, opt, heads, runs)
    stats = run.stats(base, pairs)
    stats["shape"] = run.shape
    if compare:
        _cost_model(stats, run, base, pairs, costs)
    new = run.new_tokens
    text = target.decode(new) if target.tokenizer is not None else ""
    return SpecResult(list(prompt_ids), new, text, run.steps, stats)


def timed_pairs(target, draft, prompt_ids, max_new_tokens, opt, heads, runs: int) -> list[tuple[float, float]]:
    """``runs`` alternated (target-only seconds, speculative seconds) pairs, without the records' detail."""
    quiet = replace(opt, detail=False)
    pairs = []
    for _ in range(max(runs, 1)):
        base = target_only(target, prompt_ids, max_new_tokens, opt)
        t2 = time.perf_counter()
        for _ in speculate(target, draft, prompt_ids, max_new_tokens, quiet, heads):
            pass
        pairs.append((base.seconds, time.perf_counter() - t2))
    return pairs


def _cost_model(stats: dict, run: TimedSpeculation, base: TargetOnly, pairs, costs: bool) -> None:
    """The cost model's speedup (and, with ``costs``, where the run stands on the verification-cost curve):
    tokens per step over the step's measured cost (drafting + verifying its n nodes + bookkeeping), in
    target-only steps."""
    base_step = statistics.median(b for b, _ in pairs) / max(len(base.tokens), 1)
    n_steps = max(len(run.steps), 1)
    if costs:
        stats["costs"] = run_costs(run.target, len(run.prompt_ids), stats, run.steps)
        verify = (stats["costs"]["verify_ms_per_step"] + stats["costs"]["bookkeeping_ms_per_step"]) / 1000
    else:
        verify = stats["verify_seconds"] / n_steps
    step_cost = stats["draft_seconds"] / n_steps + verify
    stats["theoretical_speedup"] = stats["mean_accepted_with_bonus"] * base_step / step_cost
