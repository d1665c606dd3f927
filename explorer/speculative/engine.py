"""Speculative decoding, one step at a time, on a loaded target + draft pair (Qt-free).

A step drafts candidates, verifies them all with ONE target forward, decides which to accept, and rolls both KV
caches back to exactly the accepted path. Three ways to draft:

- ``chain``: γ tokens from the draft model, one after the other (gpt-fast).
- ``tree``: a dynamic token tree from the draft model (EAGLE-2): expand the ``tree_topk`` children of the most
  confident nodes of each depth (by cumulative draft log-probability), keep a global top-k per depth, then keep the
  ``tree_budget`` best nodes of all depths. Nodes of one depth are drafted in one draft forward with a tree mask.
- ``lookup``: prompt lookup; the tokens that followed the latest earlier occurrence of the context's last n-gram
  (no draft model).

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
from dataclasses import replace

import numpy as np
import torch

from ..errors import ExplorerError
from ..models.checkpoint import LoadedModel
from ..models.generate import check_length, generate, next_token_probs
from ..session import check_same_tokenizer
from .costs import run_costs
from .drafters import TreePool, lookup_continuation
from .heads import Heads, capture_features, lm_logits, parse_choices
from .records import HEAD_METHODS, Decision, DraftTree, SpecOptions, StepRecord, TargetOnly
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


def tree_mask(parent: list[int]) -> torch.Tensor:
    """[N + 1, N + 1] bool over [root, nodes...]: each node sees the root, its ancestors and itself."""
    n = len(parent)
    mask = torch.eye(n + 1, dtype=torch.bool)
    mask[:, 0] = True
    for i, p in enumerate(parent):
        if p >= 0:
            mask[i + 1] |= mask[p + 1]
    return mask


@torch.inference_mode()
def verify(model, cache, root: int, tokens: list[int], parent: list[int]):
    """ONE target forward over [root, nodes...] appended to ``cache`` (whose length is the root's position).

    A chain runs causally; a tree gets :func:`tree_mask` and position ids ``root position + depth``.
    Returns (logits [N + 1, V], mask or None, position ids [N + 1], node depths [N])."""
    n, start = len(tokens), cache.length
    depth = np.zeros(n, dtype=np.int64)
    for i, p in enumerate(parent):
        depth[i] = 1 if p < 0 else depth[p] + 1
    position_ids = start + np.concatenate([[0], depth])
    dev = model.lm_head.weight.device
    ids = torch.tensor([[root] + list(tokens)], device=dev)
    if all(p == i - 1 for i, p in enumerate(parent)):
        return model(ids, cache=cache)[0], None, position_ids, depth
    mask = tree_mask(parent)
    pos = torch.as_tensor(position_ids, device=dev)
    return model(ids, position_ids=pos, cache=cache, mask=mask.to(dev))[0], mask, position_ids, depth


def _node_depths(parent: list[int]) -> list[int]:
    depth: list[int] = []
    for p in parent:
        depth.append(1 if p < 0 else depth[p] + 1)
    return depth


class Speculator:
    """Holds the two caches and the context; :meth:`step` runs one draft → verify → accept → commit round."""

    def __init__(
        self,
        target: LoadedModel,
        draft: LoadedModel | None,
        prompt_ids: list[int],
        max_new_tokens: int,
        options: SpecOptions | None = None,
        heads: Heads | None = None,
    ):
        self.opt = opt = options or SpecOptions()
        if opt.method in ("lookup", *HEAD_METHODS):
            draft = None
        opt.check(draft is not None, heads.kind if heads is not None else None)
        # Heads draft for their own method, and for prompt lookup when no n-gram matches (a fallback).
        self.heads = heads if opt.method in (*HEAD_METHODS, "lookup") else None
        self.choices = None
        vocab_ids = self.heads.draft_vocab if self.heads is not None else None
        self._draft_ids = torch.tensor(vocab_ids, device=target.device) if vocab_ids else None
        self._draft_list = list(vocab_ids) if vocab_ids else None
        if self.heads is not None and self.heads.kind == "medusa":
            self.choices = sorted(parse_choices(opt.medusa_tree) if opt.medusa_tree else heads.medusa_choices(),
                                  key=lambda c: (len(c), c))  # fmt: skip
            if max(len(c) for c in self.choices) > heads.count:
                raise ExplorerError(f"the medusa tree is deeper than the {heads.count} heads of {heads.name}")
        if draft is not None and target.tokenizer is not None and draft.tokenizer is not None:
            check_same_tokenizer(target, draft)  # tokenizers decide, not vocab sizes (padding)
        check_length(target, len(prompt_ids), max_new_tokens)
        self.target, self.draft = target, draft
        # Padded vocabularies (e.g. 151936 vs 152064): the same tokenizer, extra rows never used; compare on the
        # common part.
        self.vocab = min(target.config.vocab_size, draft.config.vocab_size if draft else target.config.vocab_size)
        self.n_prompt, self.max_new_tokens = len(prompt_ids), max_new_tokens
        self.context = list(prompt_ids)
        self.steps = 0
        self.done = max_new_tokens <= 0
        self.gen = torch.Generator(device=target.device)
        self.gen.manual_seed(opt.seed)
        self.max_nodes = len(self.choices) if self.choices else opt.max_nodes
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
                self._erope = self.heads.module.rope_table(slots + self.max_nodes)
        with torch.inference_mode():
            head = torch.tensor([prompt_ids[:-1]], device=target.device)
            if head.shape[1]:
                with capture_features(target.model) as out:
                    target.model(head, cache=self.tcache, last_only=self.ecache is None)
                if self.feats is not None:
                    self.feats[head.shape[1] - out[0].shape[1] : head.shape[1]] = out[0][0]
                if self.ecache is not None and head.shape[1] > 1:
                    # EAGLE's prefill, as the draft model's above: entries 0 .. n − 3 (feature t with token t + 1);
                    # drafting adds the root's entry n − 2.
                    self._eagle_feed(0, head.shape[1] - 1)
                if self.dcache is not None:
                    draft.model(head.to(draft.device), cache=self.dcache, last_only=True)

    @property
    def new_tokens(self) -> list[int]:
        return self.context[self.n_prompt :]

    def rewind(self, length: int) -> None:
        """Go back to the first ``length`` tokens of the context (>= the prompt): both caches are truncated."""
        if not self.n_prompt <= length <= len(self.context):
            raise ValueError(f"cannot rewind to {length} tokens")
        del self.context[length:]
        self.tcache.truncate(length - 1)
        if self.dcache is not None:
            self.dcache.truncate(min(self.dcache.length, length - 1))
        if self.ecache is not None:
            self.ecache.truncate(min(self.ecache.length, length - 1))
        self.done = False

    # -- drafting --------------------------------------------------------------------------------------------

    def _q(self, logits: torch.Tensor) -> torch.Tensor:
        return next_token_probs(logits, self.opt.temperature, self.opt.top_k)

    def _draft_forward(self, ids: list[list[int]], **kw) -> torch.Tensor:
        x = torch.tensor(ids, device=self.draft.device)
        return self.draft.model(x, cache=self.dcache, **kw)[0, :, : self.vocab]

    def _draft_pending(self) -> torch.Tensor:
        """Feed the draft whatever context it lacks (normally just the root); its logits at the root."""
        return self._draft_forward([self.context[self.dcache.length :]], last_only=True)[-1]

    def _draw(self, logits: torch.Tensor) -> tuple[int, torch.Tensor]:
        """A chain's next draft token and q: sampled from q under the sample rule, else the argmax."""
        probs = self._q(logits)
        if self.opt.accept == "sample":
            return int(torch.multinomial(probs, 1, generator=self.gen)), probs
        return int(torch.argmax(logits)), probs

    def draft_chain(self, gamma: int):
        """γ draft tokens, sampled from q (sample rule) or its argmax. Returns tokens, parent, q of each token,
        the draft distribution each was drawn from, and node -> draft cache slot for the nodes fed back."""
        tokens, qs, dists, fed = [], [], [], {}
        logits = self._draft_pending()
        for i in range(gamma):
            tok, probs = self._draw(logits)
            tokens.append(tok)
            qs.append(float(probs[tok]))
            dists.append(probs)
            if i < gamma - 1:
                fed[i] = self.dcache.length
                logits = self._draft_forward([[tok]])[-1]
        return tokens, list(range(-1, gamma - 1)), qs, dists, fed, gamma

    def draft_tree(self, depth: int):
        """EAGLE-2 dynamic tree: per depth, expand the ``tree_topk`` best frontier nodes (by cumulative draft
        log-probability) into their top-k children in one masked draft forward; finally keep the best
        ``tree_budget`` nodes. Children are deterministic (q = δ for acceptance)."""
        opt, dc = self.opt, self.dcache
        root_slot = len(self.context) - 1
        pool = TreePool(opt.tree_topk, self._q(self._draft_pending()))
        fed: dict[int, int] = {}  # pool node -> draft cache slot
        calls = 1
        frontier = pool.add_children(-1, pool.dist[-1], 1)
        for d in range(2, depth + 1):
            expand = sorted(pool.best(frontier))
            if not expand:
                break
            mask = pool.mask(expand, dc.length, root_slot + 1, fed)
            pos = torch.tensor([root_slot + pool.dep[n] for n in expand], device=self.draft.device)
            probs = self._q(self._draft_forward([[pool.tok[n] for n in expand]], position_ids=pos, mask=mask))
            calls += 1
            frontier = []
            for j, n in enumerate(expand):
                pool.grow(n, probs[j], d, frontier)
            frontier = pool.best(frontier)  # EAGLE-2: a global top-k per depth
        order, tokens, parent, qs, dists = pool.keep(opt.tree_budget)
        index = {n: i for i, n in enumerate(order)}
        fed_tree = {index[n]: s for n, s in fed.items() if n in index}
        return tokens, parent, qs, dists, fed_tree, calls

    def draft_lookup(self, gamma: int):
        tokens = lookup_continuation(self.context, self.opt.lookup_ngram, gamma)
        return tokens, list(range(-1, len(tokens) - 1)), [1.0] * len(tokens), [None] * len(tokens), {}, 0

    # -- drafting with heads on the target (source = the head / module / depth that proposed each node) -------

    def _lm_head(self) -> torch.Tensor:
        """The LM-head rows the heads draft with: the whole (common) vocabulary, or the heads' draft vocabulary
        (a contiguous copy, made once per head set and target)."""
        weight = self.target.model.lm_head.weight
        if self._draft_ids is None:
            return weight[: self.vocab]
        cached = self.heads.lm_rows
        if cached is None or cached[0] is not weight:
            rows = weight.index_select(0, self._draft_ids)
            if getattr(self.heads.module, "half_weights", False):  # multiplied like the heads' own weights
                rows = rows.to(torch.float16)
            cached = self.heads.lm_rows = (weight, rows.contiguous())
        return cached[1]

    def _token(self, i: int) -> int:
        """The token id of entry ``i`` of a head's distribution (one over the draft vocabulary, when it has one)."""
        return self._draft_list[i] if self._draft_list is not None else i

    def draft_medusa(self, depth: int):
        """Medusa's static tree: path (r1, .., rd) is the r_d-th best token of head d under the node (r1..r_{d-1}).
        All heads read the feature that predicted the root; one LM-head product for all of them."""
        L = len(self.context) - 1
        if L < 1:
            return [], [], [], [], {}, 0, []
        deepest = max(len(c) for c in self.choices if len(c) <= depth)
        probs = self._q(self.heads.module.logits(self.feats[L - 1], self._lm_head(), deepest))  # [K, vocabulary]
        need = 1 + max(c[-1] for c in self.choices)
        top = torch.topk(probs, min(need, probs.shape[-1]), dim=-1).indices.tolist()
        index: dict[tuple[int, ...], int] = {}
        tokens, parent, qs, dists, source = [], [], [], [], []
        for c in self.choices:
            if len(c) > depth:
                continue
            k = len(c) - 1
            i = top[k][c[-1]]
            index[c] = len(tokens)
            tokens.append(self._token(i))
            parent.append(index[c[:-1]] if k else -1)
            qs.append(float(probs[k, i]))
            dists.append(probs[k])
            source.append(k)
        return tokens, parent, qs, self._head_dists(dists), {}, 1, source

    def draft_mtp(self, depth: int):
        """A chain through the sequential MTP modules: module k joins module k−1's state (the target's feature for
        k = 1) with the embedding of the token before, and predicts the next one."""
        L = len(self.context) - 1
        if L < 1:
            return [], [], [], [], {}, 0, []
        embed, lm = self.target.model.model.embed_tokens.weight, self._lm_head()
        h, prev = self.feats[L - 1], self.context[-1]
        tokens, qs, dists = [], [], []
        for module in list(self.heads.module)[:depth]:
            h, out = module(h, embed[prev])
            i, probs = self._draw(lm_logits(out, lm))
            prev = self._token(i)
            tokens.append(prev)
            qs.append(float(probs[i]))
            dists.append(probs)
        n = len(tokens)
        return tokens, list(range(-1, n - 1)), qs, self._head_dists(dists), {}, n, list(range(n))

    def _eagle_feed(self, start: int, end: int) -> torch.Tensor:
        """Feed EAGLE's cache its entries start .. end − 1 (the target's feature t with the embedding of token
        t + 1, at position t) in one forward; EAGLE's predicted features there."""
        dev, (cos, sin), eagle = self.target.device, self._erope, self.heads.module
        self.ecache.truncate(start)
        embed = self.target.model.model.embed_tokens.weight
        if end - start == 1 and eagle.can_forward_one:  # the root's entry alone (the last step accepted nothing)
            emb = embed[self.context[end]]
            return eagle.forward_one(self.feats[start], emb, cos[0, 0, start], sin[0, 0, start], self.ecache)[None]
        ids = torch.tensor(self.context[start + 1 : end + 1], dtype=torch.long, device=dev)
        emb = embed[ids]
        rope = (cos[:, :, start:end], sin[:, :, start:end])
        return eagle(self.feats[start:end][None], emb[None], None, cache=self.ecache, rope=rope)[0]

    def _head_dists(self, dists: list) -> list:
        """Draft-vocabulary distributions put back on the whole vocabulary (0 elsewhere), for what reads them
        there: the records' top entries (detail) and speculative sampling's residual. Not needed otherwise."""
        if self._draft_ids is None or not (self.opt.detail or self.opt.accept == "sample"):
            return dists
        out = []
        for q in dists:
            full = q.new_zeros(self.vocab)
            full[self._draft_ids] = q
            out.append(full)
        return out

    def draft_eagle(self, depth: int):
        """EAGLE-2: feed EAGLE's cache the real features it lacks (ending with the root's entry) in one forward,
        then grow the tree as :meth:`draft_tree` does, each depth one forward of EAGLE on its own predicted
        features (masked to the ancestors, unless the tree is a chain so far); finally drop the drafted entries
        (the next step feeds the real ones). Distributions stay on the draft vocabulary until the end."""
        eagle, ec, opt = self.heads.module, self.ecache, self.opt
        L = len(self.context) - 1  # the root's position
        if L < 1:
            return [], [], [], [], {}, 0, []
        embed, lm, dev = self.target.model.model.embed_tokens.weight, self._lm_head(), self.target.device
        cos, sin = self._erope
        out = self._eagle_feed(min(ec.length, L - 1), L)  # at least the root's entry: its output, the root's feature
        feat = {-1: out[-1]}  # node -> EAGLE's predicted feature at the node (its children's distribution)
        pool = TreePool(opt.tree_topk, self._q(lm_logits(out[-1], lm)), self._draft_list)
        slot: dict[int, int] = {}
        calls = 1
        frontier = pool.add_children(-1, pool.dist[-1], 1)
        for d in range(2, depth + 1):
            expand = sorted(pool.best(frontier))
            if not expand:
                break
            p = L - 1 + pool.dep[expand[0]]  # all of this depth's nodes sit at one position
            n = expand[0]
            if len(expand) == 1 and len(slot) == pool.dep[n] - 1 and eagle.can_forward_one:
                # A chain so far (one node fed per depth, so all of them ancestors): one query over the whole
                # cache, no mask, in EAGLE's lean one-entry forward.
                slot[n] = ec.length
                out = eagle.forward_one(feat[pool.par[n]], embed[pool.tok[n]], cos[0, 0, p], sin[0, 0, p], ec)[None]
            else:
                mask = pool.mask(expand, ec.length, L, slot, device=dev)  # the real entries 0 .. L - 1
                f_in = torch.stack([feat[pool.par[n]] for n in expand])[None]
                e_in = embed[torch.tensor([pool.tok[n] for n in expand], device=dev)][None]
                rope = (cos[:, :, p : p + 1], sin[:, :, p : p + 1])
                out = eagle(f_in, e_in, None, cache=ec, mask=mask, rope=rope)[0]
            probs = self._q(lm_logits(out, lm))
            calls += 1
            frontier = []
            for j, n in enumerate(expand):
                feat[n] = out[j]
                pool.grow(n, probs[j], d, frontier)
            frontier = pool.best(frontier)
        ec.truncate(L)
        order, tokens, parent, qs, dists = pool.keep(opt.tree_budget)
        return tokens, parent, qs, self._head_dists(dists), {}, calls, [pool.dep[n] - 1 for n in order]

    # -- one step --------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> StepRecord:
        if self.done:
            raise ValueError("speculation is finished")
        opt = self.opt
        L = len(self.context) - 1  # the root's slot and position
        root = self.context[-1]
        remaining = self.max_new_tokens - len(self.new_tokens)
        depth = min(opt.depth, remaining - 1)  # never draft past max_new_tokens

        t0 = time.perf_counter()
        source = None
        if depth <= 0:
            tokens, parent, qs, dists, fed, calls = [], [], [], [], {}, 0
            source = [] if self.heads is not None else None
        elif opt.method == "chain":
            tokens, parent, qs, dists, fed, calls = self.draft_chain(depth)
        elif opt.method == "tree":
            tokens, parent, qs, dists, fed, calls = self.draft_tree(depth)
        elif opt.method == "lookup":
            tokens, parent, qs, dists, fed, calls = self.draft_lookup(depth)
            if not tokens and self.heads is not None:  # no n-gram matched: the heads guess instead
                draft = {"medusa": self.draft_medusa, "eagle": self.draft_eagle, "mtp": self.draft_mtp}
                tokens, parent, qs, dists, fed, calls, source = draft[self.heads.kind](depth)
        else:
            draft = {"medusa": self.draft_medusa, "eagle": self.draft_eagle, "mtp": self.draft_mtp}[opt.method]
            tokens, parent, qs, dists, fed, calls, source = draft(depth)
        t1 = time.perf_counter()

        # Verify: one target forward over [root, nodes...].
        N = len(tokens)
        with capture_features(self.target.model) as feats_out:
            logits, mask, position_ids, depth_arr = verify(self.target.model, self.tcache, root, tokens, parent)
        t_forward = time.perf_counter()
        logits = logits[:, : self.vocab]
        dev = self.target.device
        verified = self.tcache.length
        argmax = logits.argmax(dim=-1)
        probs = self._q(logits)  # [N + 1, V], the target distributions after the root and after each node
        node_rows = torch.tensor([p + 1 for p in parent], dtype=torch.long, device=dev)
        tok_t = torch.tensor(tokens, dtype=torch.long, device=dev)
        p_nodes = probs[node_rows, tok_t].float().cpu().numpy() if N else np.zeros(0, np.float32)

        walk = self._accept(tokens, parent, qs, dists, logits, probs, argmax)
        path, decisions, rejected, next_token, residual, residual_token, bonus = walk

        # Commit: cut at EOS / max_new_tokens; keep exactly the accepted path in both caches.
        new = [tokens[n] for n in path] + [next_token]
        origins = ["accepted"] * len(path) + ["bonus" if rejected is None else "corrected"]
        if opt.stop_at_eos:
            for i, t in enumerate(new):
                if t in self.target.eos_token_ids:
                    new, origins = new[: i + 1], origins[: i + 1]
                    self.done = True
                    break
        if len(new) >= remaining:
            new, origins = new[:remaining], origins[:remaining]
            self.done = True
        self.context += new
        in_cache = path[: len(new) - 1]  # accepted nodes whose keys/values stay (the last new token is the root)
        t_kept = [L] + [L + 1 + n for n in in_cache]
        _compact(self.tcache, L, t_kept)
        if self.feats is not None:  # the target's features along the kept path, for the next step's heads
            rows = torch.tensor([0] + [n + 1 for n in in_cache], device=dev)
            self.feats[L : L + len(rows)] = feats_out[0][0, rows]
        t2 = time.perf_counter()

        d_kept: list[int] = []
        if self.dcache is not None:
            if self.dcache.length > L:
                fed_path = [fed[n] for n in in_cache if n in fed]
                d_kept = [L] + fed_path
                _compact(self.dcache, L, d_kept)
        t3 = time.perf_counter()

        record = StepRecord(
            step=self.steps,
            context_len=L + 1,
            root_token=root,
            tree=DraftTree(
                tokens=np.asarray(tokens, dtype=np.int64),
                parent=np.asarray(parent, dtype=np.int64),
                depth=depth_arr,
                q=np.asarray(qs, dtype=np.float32),
                texts=_texts(self.target, tokens) if opt.detail else [],
                source=None if source is None else np.asarray(source, dtype=np.int64),
            ),
            p=p_nodes,
            target_argmax=argmax.cpu().numpy().astype(np.int64),
            mask=None if mask is None else mask.numpy(),
            position_ids=position_ids,
            decisions=decisions,
            accepted=path,
            rejected=rejected,
            residual_top_ids=None if residual is None else residual[0],
            residual_top_probs=None if residual is None else residual[1],
            residual_token=residual_token,
            bonus_token=bonus,
            new_tokens=new,
            origins=origins,
            target_slots_verified=verified,
            target_slots_kept=t_kept,
            draft_slots_kept=d_kept,
            draft_calls=calls,
            draft_seconds=(t1 - t0) + (t3 - t2),
            verify_seconds=t2 - t1,
            forward_seconds=t_forward - t1,
        )
        record.verify_seconds += time.perf_counter() - t3  # building this record is bookkeeping too
        self.steps += 1
        return record

    def _accept(self, tokens, parent, qs, dists, logits, probs, argmax):
        """Walk the tree from the root with the chosen rule. Returns (path, decisions, rejected node,
        next token, residual top entries, residual token, bonus token)."""
        opt = self.opt
        children: dict[int, list[int]] = {}
        for i, p in enumerate(parent):
            children.setdefault(p, []).append(i)
        sampled_chain = opt.method in ("chain", "mtp") and opt.accept == "sample"
        path, decisions = [], []
        cur, rejected = -1, None
        residual = residual_token = bonus = None
        am = argmax.tolist()
        while True:
            row = cur + 1
            kids = children.get(cur, [])
            p_row = probs[row]
            if opt.detail and kids:
                p_top = _top(p_row)
                q_dist = dists[kids[0]]
                q_top = _top(q_dist) if q_dist is not None else (None, None)
            else:
                p_top = q_top = (None, None)
            tops = dict(p_top_ids=p_top[0], p_top_probs=p_top[1], q_top_ids=q_top[0], q_top_probs=q_top[1])
            nxt = None
            if opt.accept == "greedy":
                for c in kids:
                    ok = tokens[c] == am[row]
                    decisions.append(
                        Decision(c, tokens[c], float(p_row[tokens[c]]), qs[c], float(ok), None, ok, **tops)
                    )
                    if ok:
                        nxt = c
                        break
                    rejected = c
                if nxt is None:
                    token = am[row]
            elif opt.accept == "typical":
                h = float(-(p_row * torch.log(p_row.clamp_min(1e-30))).sum())
                threshold = min(opt.typical_epsilon, opt.typical_delta * math.exp(-h))
                for c in kids:
                    px = float(p_row[tokens[c]])
                    ok = px > threshold
                    decisions.append(Decision(c, tokens[c], px, qs[c], threshold, None, ok, entropy=h, **tops))
                    if ok:
                        nxt = c
                        break
                    rejected = c
                if nxt is None:
                    token = am[row] if opt.temperature <= 0 else int(torch.multinomial(p_row, 1, generator=self.gen))
            else:  # sample
                resid = p_row
                for c in kids:
                    x = tokens[c]
                    px = float(resid[x])
                    qx = qs[c] if sampled_chain else 1.0  # deterministic candidates: q = δ_x
                    ratio = min(1.0, px / qx) if qx > 0 else 1.0
                    u = float(torch.rand((), generator=self.gen, device=resid.device))
                    ok = u < ratio
                    decisions.append(Decision(c, x, px, qx, ratio, u, ok, **tops))
                    if ok:
                        nxt = c
                        break
                    rejected = c
                    if sampled_chain:
                        resid = (resid - dists[c]).clamp_min(0)
                    else:
                        resid = resid.clone()
                        resid[x] = 0
                    total = float(resid.sum())
                    resid = resid / total if total > 0 else p_row
                if nxt is None:
                    token = int(torch.multinomial(resid, 1, generator=self.gen))
                    if kids:
                        residual, residual_token = _top(resid), token
            if nxt is None:
                if not kids:
                    bonus = token
                    rejected = None
                return path, decisions, rejected, token, residual, residual_token, bonus
            path.append(nxt)
            cur = nxt


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
                 options: SpecOptions, heads: Heads | None = None):  # fmt: skip
        self.args = (target, draft, prompt_ids, max_new_tokens, options, heads)
        self.target, self.prompt_ids, self.options = target, prompt_ids, options
        self.steps: list[StepRecord] = []
        self.seconds = 0.0

    def __iter__(self) -> Iterator[StepRecord]:
        t0 = time.perf_counter()
        for record in speculate(*self.args):
            self.steps.append(record)
            yield record
        self.seconds = time.perf_counter() - t0

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
        pairs = _timed_pairs(target, draft, prompt_ids, max_new_tokens, opt, heads, runs)
    stats = run.stats(base, pairs)
    if compare:
        _cost_model(stats, run, base, pairs, costs)
    new = run.new_tokens
    text = target.decode(new) if target.tokenizer is not None else ""
    return SpecResult(list(prompt_ids), new, text, run.steps, stats)


def _timed_pairs(target, draft, prompt_ids, max_new_tokens, opt, heads, runs: int) -> list[tuple[float, float]]:
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
