"""Where speculation pays: this machine's measured cost of verifying n tokens, drafting costs, and the acceptance
a configuration needs to break even (Qt-free).

A step costs its drafting, ONE target forward over the root and the n drafted nodes, and the bookkeeping around it
(the target's distributions, the acceptance walk, cache compaction). Speculation wins when the
expected tokens per step outgrow that cost measured in target-only steps: on a GPU or with a large model, verifying
8 tokens costs about as much as 1 (weight streaming dominates); on a small model on two CPU cores it does not.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

CURVE_SIZES = tuple(range(1, 33))
# The app's curve: fewer points (about 70 forwards), measured after a run and kept for the runs that follow.
APP_CURVE_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def chain_tokens(alpha: float, depth: int) -> float:
    """Expected tokens per step of a chain of ``depth`` drafts with per-position acceptance α (bonus included)."""
    return depth + 1.0 if alpha >= 1 else (1 - alpha ** (depth + 1)) / (1 - alpha)


def alpha_for(tokens: float, depth: int) -> float | None:
    """The per-position acceptance α of a chain of ``depth`` that yields ``tokens`` per step; None if even α = 1
    falls short (bisection)."""
    if tokens > depth + 1:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chain_tokens(mid, depth) < tokens else (lo, mid)
    return lo


def _binary_tree_mask(n: int) -> torch.Tensor:
    """[n + 1, n + 1] tree mask over [root, nodes] for a heap-ordered binary tree (node i's parent (i − 1) // 2)."""
    mask = torch.eye(n + 1, dtype=torch.bool)
    mask[:, 0] = True
    for i in range(n):
        p = (i - 1) // 2 if i else -1
        if p >= 0:
            mask[i + 1] |= mask[p + 1]
    return mask


@torch.inference_mode()
def verify_cost_curve(model, context_len: int, sizes=CURVE_SIZES, repeats: int = 3) -> dict:
    """Median seconds of one target forward over [root, n nodes] after a ``context_len`` prefix, for a chain
    (causal) and a tree (binary tree mask, positions by depth), n in ``sizes``; n = 0 is a plain decode step."""
    dev = model.lm_head.weight.device
    top = max(sizes)
    cache = model.new_cache(context_len + top + 2)
    ids = torch.zeros(1, top + 1, dtype=torch.long, device=dev)
    if context_len:
        model(torch.zeros(1, context_len, dtype=torch.long, device=dev), cache=cache, last_only=True)

    def timed(n: int, tree: bool) -> float:
        kw = {}
        if tree and n > 1:
            mask = _binary_tree_mask(n).to(dev)
            depth = torch.zeros(n + 1, dtype=torch.long)
            for i in range(n):
                depth[i + 1] = 1 if i == 0 else depth[(i - 1) // 2 + 1] + 1
            kw = dict(mask=mask, position_ids=(context_len + depth).to(dev))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(ids[:, : n + 1], cache=cache, **kw)
            times.append(time.perf_counter() - t0)
            cache.truncate(context_len)
        return statistics.median(times)

    timed(4, False), timed(4, True)  # warm-up
    # Every cost is divided by the one-token step: measured before, between and after the sweeps and taken as the
    # median, so that a burst of machine noise while it was timed does not tilt the whole curve.
    bases = [timed(0, False)]
    chain = [timed(n, False) for n in sizes]
    bases.append(timed(0, False))
    tree = [timed(n, True) for n in sizes]
    bases.append(timed(0, False))
    return {
        "sizes": list(sizes),
        "base_seconds": statistics.median(bases),
        "chain_seconds": chain,
        "tree_seconds": tree,
    }


def where_it_pays(curve: dict, stats: dict, tree: bool) -> dict:
    """The costs of the run's configuration on ``curve``: verification of its mean node count relative to one
    target step, drafting per drafted token, the tokens per step and the chain α needed to break even, and the
    measured figures against them."""
    sizes = np.asarray(curve["sizes"])
    seconds = np.asarray(curve["tree_seconds" if tree else "chain_seconds"])
    base = curve["base_seconds"]
    steps = max(stats["steps"], 1)
    nodes = stats["drafted"] / steps
    verify = float(np.interp(nodes, np.concatenate([[0], sizes]), np.concatenate([[base], seconds])))
    draft_step = stats["draft_seconds"] / steps
    # What a step does besides drafting and the forward (target distributions, the acceptance walk, cache
    # compaction), measured in the run: it is paid per step, like verification, and grows with the node count.
    bookkeeping = stats.get("bookkeeping_seconds", 0.0) / steps
    depth = stats["depth"] or 1
    need = (verify + draft_step + bookkeeping) / base  # tokens per step that break even with target-only decoding
    have = stats["mean_accepted_with_bonus"]
    return {
        "verify_cost_curve": {
            "sizes": curve["sizes"],
            "base_ms": 1000 * base,
            "chain_ms": [1000 * s for s in curve["chain_seconds"]],
            "tree_ms": [1000 * s for s in curve["tree_seconds"]],
        },
        "tree": tree,  # which curve: the run's steps were verified with a tree mask (else as a causal chain)
        "nodes_per_step": nodes,
        "verify_ms_per_step": 1000 * verify,
        "verify_cost_ratio": verify / base,
        "draft_ms_per_step": 1000 * draft_step,
        "bookkeeping_ms_per_step": 1000 * bookkeeping,
        "draft_ms_per_token": 1000 * stats["draft_seconds"] / max(stats["drafted"], 1),
        "draft_cost_per_token": stats["draft_seconds"] / max(stats["drafted"], 1) / base,
        "break_even_tokens_per_step": need,
        # The α a chain of the run's depth would need (the chain model; not the run's α, which stats measure):
        "break_even_alpha": alpha_for(need, depth),
        "measured_tokens_per_step": have,
        "model_speedup": have / need,
    }


def verified_as_tree(steps) -> bool:
    """Whether a run's steps were verified with a tree mask (an EAGLE chain is verified as a causal chain)."""
    return any(s.mask is not None for s in steps)


def run_costs(target, context_len: int, stats: dict, steps, sizes=CURVE_SIZES, curves: dict | None = None) -> dict:
    """Where a finished run stands on this machine's verification-cost curve (:func:`where_it_pays`). ``curves``
    caches the measured curves by target, dtype, device and prompt length, so that reruns measure nothing."""
    key = (str(target.path), str(target.dtype), str(target.device), context_len)
    curve = curves.get(key) if curves is not None else None
    if curve is None:
        curve = verify_cost_curve(target.model, context_len, sizes=sizes)
        if curves is not None:
            curves[key] = curve
    return where_it_pays(curve, stats, verified_as_tree(steps))
