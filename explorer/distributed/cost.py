"""The α–β model of all-reduce, fitted to this machine's measured loopback timings (Qt-free).

A message of S bytes costs α + S/β (α: latency per message, β: bandwidth). Ring all-reduce of S bytes over N
ranks: 2(N−1) steps, each moving one chunk of S/N bytes, so t_ring = 2(N−1)·(α + S/(N·β)). Two alternatives:

* binary tree (reduce up, broadcast down, no pipelining): t_tree = 2⌈log2 N⌉·(α + S/β) — fewer steps, whole
  messages: it wins for small S at large N (where latency dominates);
* direct (every rank sends to one root at once, the root broadcasts back): t_direct = 2·(α + (N−1)·S/β) — two
  latencies only, but the root's link carries (N−1)·S each way: it wins only for the smallest messages.

:func:`sweep` runs inside the ranks (every rank calls it) and times the hand-written ring and ``dist.all_reduce``
over several sizes; :func:`fit` finds α and β from such timings (least squares on relative error, α, β ≥ 0).
On one machine the "links" are loopback sockets between processes that share the CPU cores, so β is a
memory-copy-and-scheduling figure, not a network's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

DEFAULT_SIZES = (4 * 2**10, 32 * 2**10, 256 * 2**10, 2 * 2**20)  # bytes (float32 tensors)
REPEATS = 3


def sweep(sizes: list[int] | None = None, repeats: int = REPEATS) -> dict:
    """Median over ``repeats`` of the slowest rank's time of one ring all-reduce and one ``dist.all_reduce`` of
    float32 tensors of each size in bytes (after one warm-up each). Every rank must call it."""
    import torch
    import torch.distributed as dist

    from .ring import ring_allreduce

    sizes = list(sizes or DEFAULT_SIZES)
    n = dist.get_world_size()
    out = {"n": n, "sizes": sizes, "ring": [], "all_reduce": []}
    for size in sizes:
        x = torch.randn(max(size // 4, 1))
        for name, run in (("ring", lambda t: ring_allreduce(t)), ("all_reduce", lambda t: dist.all_reduce(t.clone()))):
            times = []
            for rep in range(repeats + 1):
                dist.barrier()
                t0 = time.perf_counter()
                run(x)
                elapsed = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
                if rep:
                    times.append(float(elapsed))
            out[name].append(float(np.median(times)))
    return out


@dataclass
class AlphaBeta:
    alpha: float  # seconds per message
    beta: float  # bytes per second
    points: int  # measurements fitted
    rel_error: float  # median |model − measured| / measured

    def ring(self, n: int, size: float) -> float:
        return 2 * (n - 1) * (self.alpha + size / (n * self.beta)) if n > 1 else 0.0

    def tree(self, n: int, size: float) -> float:
        return 2 * math.ceil(math.log2(n)) * (self.alpha + size / self.beta) if n > 1 else 0.0

    def direct(self, n: int, size: float) -> float:
        return 2 * (self.alpha + (n - 1) * size / self.beta) if n > 1 else 0.0

    def best(self, n: int, size: float) -> str:
        times = {"ring": self.ring(n, size), "tree": self.tree(n, size), "direct": self.direct(n, size)}
        return min(times, key=times.get)

    def wins_below(self, n: int, other: str, hi: float = 2.0**34) -> float:
        """The largest message size (bytes) at which ``other`` ("tree" or "direct") beats the ring at ``n``
        ranks (0: never). Both are linear in the size, so there is one crossing at most."""
        f = getattr(self, other)
        d0 = f(n, 0.0) - self.ring(n, 0.0)  # the difference at size 0 ...
        d1 = (f(n, hi) - self.ring(n, hi) - d0) / hi  # ... and its slope per byte
        if d0 >= 0:
            return 0.0
        return hi if d1 <= 0 else -d0 / d1

    def to_json(self) -> dict:
        return {"alpha_s": self.alpha, "beta_bytes_per_s": self.beta, "points": self.points,
                "median_rel_error": self.rel_error}  # fmt: skip


def fit(measurements: list[dict], key: str = "ring") -> AlphaBeta:
    """α and β from sweeps (each: n, sizes, and times under ``key``): t = 2(N−1)·α + 2(N−1)/N·S·(1/β), least
    squares on relative error, both non-negative."""
    rows, times = [], []
    for m in measurements:
        n = m["n"]
        for size, t in zip(m["sizes"], m[key], strict=True):
            if n > 1 and t > 0:
                rows.append((2 * (n - 1), 2 * (n - 1) / n * size))
                times.append(t)
    if not rows:
        return AlphaBeta(0.0, math.inf, 0, math.nan)
    a, t = np.asarray(rows, dtype=np.float64), np.asarray(times, dtype=np.float64)
    w = a / t[:, None]  # relative error: each row divided by its time
    coef = _nonnegative_lstsq(w, np.ones(len(t)))
    alpha, inv_beta = coef
    model = a @ coef
    rel = float(np.median(np.abs(model - t) / t))
    return AlphaBeta(float(alpha), float(1 / inv_beta) if inv_beta > 0 else math.inf, len(t), rel)


def _nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two non-negative coefficients: the unconstrained solution if it is, else the better one-variable fit."""
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    if (coef >= 0).all():
        return coef
    best, best_err = np.zeros(2), math.inf
    for j in range(2):
        col = a[:, j]
        c = max(float(col @ b) / float(col @ col), 0.0) if col @ col > 0 else 0.0
        trial = np.zeros(2)
        trial[j] = c
        err = float(np.sum((a @ trial - b) ** 2))
        if err < best_err:
            best, best_err = trial, err
    return best


def describe_crossings(model: AlphaBeta, ns=range(2, 9)) -> list[str]:
    """Per N, where the model says a tree or a direct reduce beats the ring."""
    lines = []
    for n in ns:
        parts = []
        for other in ("tree", "direct"):
            below = model.wins_below(n, other)
            if below > 0:
                parts.append(f"{other} below {_bytes(below)}")
        lines.append(f"N={n}: " + (", ".join(parts) if parts else "the ring at every size"))
    return lines


def _bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} GiB"


def cost_worker(ctx, args: dict) -> dict:
    """Launcher worker: one :func:`sweep` on these ranks (``sizes`` in bytes, ``repeats``)."""
    ctx.at(1, "sweep")
    with ctx.collective("cost sweep"):
        return sweep(args.get("sizes"), args.get("repeats", REPEATS))
