"""Drafting pieces that hold no model: prompt lookup, and the EAGLE-2 candidate pool that the draft-model tree and
EAGLE's tree both grow (the forwards themselves run inside the engine's Speculator, which owns the caches)."""

from __future__ import annotations

import math

import numpy as np
import torch


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
    arr = np.asarray(context, dtype=np.int64)
    size = len(arr)
    for n in range(min(n_max, size - 1), 0, -1):
        suffix = arr[size - n :]
        windows = np.lib.stride_tricks.sliding_window_view(arr[: size - 1], n)  # starts 0 .. size - 1 - n
        hits = np.flatnonzero((windows == suffix).all(axis=1))
        if len(hits):
            start = int(hits[-1]) + n
            return arr[start : start + length].tolist()
    return []
