"""The FlashAttention kernel's walk over its tiles, one step per visited (Q block, KV tile), for the attention view.

Qt-free. :func:`attention_walk` traces one head of a real model with :func:`explorer.attention.trace.trace_attention`
(the instrumented kernel: its own m, l, alpha per row and tile) and yields one :class:`TileStep` per tile in the
kernel's visiting order: Q blocks in grid order, and within a Q block its KV tiles 0, 1, ... left to right, visited
tiles only (tiles above the causal diagonal are never visited: loop bounds, not masks). Every step refers to one
shared :class:`AttentionWalk`, computed once per trace, so stepping and rendering cost nothing.

What the walk adds to the kernel's trace (all float64 numpy, independent of the kernel):

- ``scores``: s = q·kᵀ·scale for every (query, key) and ``allowed``, the mask the model applies (causal triangle,
  Mistral's sliding window), so the score matrix can be drawn with the tile grid over it;
- ``tile_rowmax``: each row's max over the tile just processed (the ``rowmax(s)`` of the update rule);
- ``distance``: ||O_partial − O|| per row after each tile, where O_partial = acc / l is the output the online softmax
  would give if it stopped after that tile (recomputed tile by tile in the kernel's order) and O is the kernel's
  final output: it shrinks to the kernel's rounding error at the block's last tile;
- ``hbm``: bytes moved between HBM and the chip by naive attention vs the tiled kernel (see :func:`hbm_traffic`);
- ``unsafe``: what exp(s) without the max subtraction would do to these very scores in float16
  (see :func:`unsafe_softmax`);
- FlashAttention-4's conditional rescaling (τ = 8 in log2 units): how many of FA2's rescales it would skip
  (see :func:`fa4_rescales`);
- per Q block, what the view's plots of that block draw (:class:`BlockSeries`, computed on first use and kept).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..kernels import runs_interpreted
from ..kernels.tiled_torch import NOT_VISITED, VISITED_MASKED
from ..models.checkpoint import LoadedModel
from ..models.generate import generate
from .meta import TraceMeta
from .trace import AttentionTrace, trace_attention

__all__ = [
    "AttentionWalk",
    "BlockSeries",
    "TileStep",
    "attention_walk",
    "backend_label",
    "build_walk",
    "compute_walk",
    "continue_prompt",
    "fa4_rescales",
    "hbm_traffic",
    "unsafe_softmax",
    "walk_order",
]

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
LSE_BYTES = 4  # the kernel stores LSE in float32
LOG2E = math.log2(math.e)
FA4_TAU_LOG2 = 8.0  # FlashAttention-4 rescales only when the running max grows by more than log2(256) = 8
FP16_OVERFLOW = math.log(65520.0)  # exp(s) rounds to inf in float16 from 65520 on: s > 11.09
FP32_OVERFLOW = math.log(float(np.finfo(np.float32).max))  # about 88.72 (bfloat16 has the same exponent range)


def backend_label(backend: str) -> str:
    """How the kernel actually ran, in words for the screen."""
    if backend == "triton":
        return "Triton interpreter on CPU" if runs_interpreted() else "Triton on GPU"
    return "torch tiled twin (no Triton)"


def walk_order(tile_state: np.ndarray) -> list[tuple[int, int]]:
    """The kernel's visiting order: Q blocks in grid order, then KV tiles left to right, visited tiles only."""
    nq, nkv = tile_state.shape
    return [(i, j) for i in range(nq) for j in range(nkv) if tile_state[i, j] != NOT_VISITED]


def allowed_mask(n: int, causal: bool, sliding_window: int | None = None) -> np.ndarray:
    """bool [N, N], True where query i may attend to key j: everything, the causal triangle, or (Mistral past its
    window) the keys j with i − window < j <= i, as the model builds it."""
    if not causal:
        return np.ones((n, n), dtype=bool)
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    allowed = j <= i
    if sliding_window is not None and n > sliding_window:
        allowed &= j > i - sliding_window
    return allowed


def hbm_traffic(
    n: int, head_dim: int, block_n: int, tile_state: np.ndarray, dtype: str, causal: bool = True
) -> dict[str, Any]:
    """Bytes one head moves between HBM and the chip in the forward pass, b = bytes per element of ``dtype``.

    naive (standard attention, Dao et al. 2022, Algorithm 0): read Q, K, V (3·N·D), write the N×N scores S and read
    them back for the softmax (2·N²), write the N×N probabilities P and read them back for P·V (2·N²), write O (N·D):
    ``naive = b·(4·N·D + 4·N²)``; the full N×N matrices are materialized even when causal.

    flash (this kernel): read Q once (N·D), read K and V once per Q block, only the tiles that block visits
    (2·D·Σ_i keys_i, keys_i = the keys in Q block i's visited tiles, the partial last tile counted by its real keys),
    write O (N·D) and LSE (N float32): ``flash = b·(2·N·D + 2·D·Σ_i keys_i) + 4·N``. Caches are ignored.
    """
    b = DTYPE_BYTES[dtype]
    nq, nkv = tile_state.shape
    tile_keys = np.minimum(block_n, n - block_n * np.arange(nkv))
    keys_per_block = [int(tile_keys[tile_state[i] != NOT_VISITED].sum()) for i in range(nq)]
    kv_keys = sum(keys_per_block)
    naive = b * (4 * n * head_dim + 4 * n * n)
    flash = b * (2 * n * head_dim + 2 * head_dim * kv_keys) + LSE_BYTES * n
    return {
        "dtype_bytes": b,
        "naive_bytes": naive,
        "flash_bytes": flash,
        "ratio": naive / flash,
        "naive_score_bytes": b * 4 * n * n,
        "kv_reads_per_block": keys_per_block,
        "causal": bool(causal),
        "formula_naive": "b*(4*N*D + 4*N^2): read Q,K,V; write+read S; write+read P; write O",
        "formula_flash": "b*(2*N*D + 2*D*sum_i keys_i) + 4*N: read Q once; K,V once per Q block; write O; LSE fp32",
    }


def unsafe_softmax(scores: np.ndarray, allowed: np.ndarray) -> dict[str, Any]:
    """What "unsafe" softmax, exp(s) / Σ exp(s) without subtracting the row max first, does in float16 to these
    scores: how many exp(s) round to inf (s > ln 65520 ≈ 11.09), how many rows then hold inf/inf = NaN, how many
    rows' sums overflow float16 even where no single term does; and for comparison the float32/bfloat16 limit
    (s > 88.72). Subtracting the running max, as FlashAttention does, keeps every exp(s − m) <= 1."""
    s = scores[allowed].astype(np.float64)
    with np.errstate(over="ignore"):
        e16 = np.exp(s).astype(np.float16)
        row_sums = np.where(allowed, np.exp(scores.astype(np.float64)), 0.0).sum(1)
    inf_entries = np.zeros_like(allowed)
    inf_entries[allowed] = np.isinf(e16)
    rows_inf = inf_entries.any(1)
    return {
        "scores": int(s.size),
        "max_score": float(s.max()) if s.size else None,
        "fp16_threshold": FP16_OVERFLOW,
        "fp16_inf": int(np.isinf(e16).sum()),
        "fp16_nan_rows": int(rows_inf.sum()),
        "fp16_sum_overflow_rows": int(((row_sums >= 65520.0) & ~rows_inf).sum()),
        "fp32_threshold": FP32_OVERFLOW,
        "fp32_inf": int((s > FP32_OVERFLOW).sum()),
        "rows": int(allowed.shape[0]),
    }


def fa4_rescales(tile_rowmax: np.ndarray, tau_log2: float = FA4_TAU_LOG2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which (row, tile) updates rescale acc and l, FA2 vs FlashAttention-4.

    ``tile_rowmax`` [nq, nkv, BM] natural units, NaN where the row saw no allowed key in that tile (or the tile was not
    visited). FA2 multiplies by alpha = exp(m_old − m_new) every tile; a real rescale (alpha < 1) happens whenever
    the running max grows. FA-4 keeps a stale max and rescales only when a tile's max exceeds it by more than
    ``tau_log2`` in log2 units (exp2 of at most 2^8 = 256 fits easily in float32 and the final O = acc / l is
    unchanged). The first tile with an allowed key sets the max in both and is no rescale.
    Returns (fa2 bool, fa4 bool, fa4_max float32 natural units: the stale max FA-4 runs with, NaN where none)."""
    t2 = tile_rowmax.astype(np.float64) * LOG2E
    nq, nkv, bm = t2.shape
    fa2 = np.zeros(t2.shape, dtype=bool)
    fa4 = np.zeros(t2.shape, dtype=bool)
    stale = np.full(t2.shape, np.nan)
    m2 = np.full((nq, bm), -np.inf)  # FA2's running max
    m4 = np.full((nq, bm), -np.inf)  # FA-4's stale max
    for j in range(nkv):
        t = t2[:, j]
        seen = ~np.isnan(t)
        started = np.isfinite(m2)
        tt = np.where(seen, t, -np.inf)
        fa2[:, j] = seen & started & (tt > m2)
        fa4[:, j] = seen & started & (tt > np.where(started, m4, np.inf) + tau_log2)
        m2 = np.maximum(m2, tt)
        m4 = np.where(~started | fa4[:, j], np.maximum(m4, tt), m4)
        stale[:, j] = np.where(np.isfinite(m4), m4 / LOG2E, np.nan)
    return fa2, fa4, stale.astype(np.float32)


@dataclass
class AttentionWalk:
    """One trace and everything derived from it once (see the module docstring). Arrays over tiles are
    [n_q_blocks, n_kv_blocks, BLOCK_M] float32 with NaN for tiles not visited and padding rows past N."""

    trace: AttentionTrace
    scores: np.ndarray  # float32 [N, N]: q·kᵀ·scale (float64 math), for every entry, masked or not
    allowed: np.ndarray  # bool [N, N]
    order: list[tuple[int, int]]
    tile_rowmax: np.ndarray  # natural units; NaN where the row has no allowed key in the tile
    distance: np.ndarray  # ||O_partial − O_kernel|| per row after the tile
    fa2_rescale: np.ndarray  # bool
    fa4_rescale: np.ndarray  # bool
    fa4_max: np.ndarray  # the stale max FA-4 would run with (natural units)
    hbm: dict[str, Any]
    unsafe: dict[str, Any]
    backend_label: str
    n_prompt: int  # tokens of the prompt itself; the rest of N is the model's greedy continuation
    info: dict[str, Any] = field(default_factory=dict)
    _blocks: dict[int, BlockSeries] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def meta(self) -> TraceMeta:
        return self.trace.meta

    @cached_property
    def step_index(self) -> np.ndarray:
        """int64 [n_q_blocks, n_kv_blocks]: the walk step at which each tile is visited, −1 for never."""
        index = np.full(self.trace.tile_state.shape, -1, np.int64)
        for s, (i, j) in enumerate(self.order):
            index[i, j] = s
        return index

    @cached_property
    def fp16_overflow(self) -> np.ndarray:
        """bool [N, N]: the allowed scores whose exp(s), without the max subtraction, is inf in float16."""
        return self.allowed & (self.scores.astype(np.float64) > self.unsafe["fp16_threshold"])

    @cached_property
    def score_levels(self) -> tuple[float, float]:
        """The colour scale of the score matrix: the 1st to the 99.5th percentile of the allowed scores."""
        vals = self.scores[self.allowed]
        lo, hi = np.percentile(vals, [1, 99.5]) if vals.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        return float(lo), float(hi)

    def score_image(self) -> np.ndarray:
        """float32 [N, N]: the scores with masked entries at the bottom of the colour scale (drawn over anyway)."""
        return np.ascontiguousarray(np.where(self.allowed, self.scores, self.score_levels[0]).astype(np.float32))

    def block_key_end(self, q_block: int) -> int:
        """One past the last key Q block ``q_block`` visits (the end of its last visited tile)."""
        return min((self.block_tiles[q_block][1] + 1) * self.trace.block_n, self.trace.n)

    def block(self, q_block: int) -> BlockSeries:
        """What the plots of Q block ``q_block`` draw (computed on first use and kept)."""
        if q_block not in self._blocks:
            self._blocks[q_block] = BlockSeries.of(self, q_block)
        return self._blocks[q_block]

    def shown_row(self, step: TileStep, select: int | None) -> int:
        """The row of ``step``'s Q block the plots single out (0-based within the block): query row ``select``
        while it lies in that block, else the row that rescaled most."""
        if select is not None and step.rows[0] <= select < step.rows[1]:
            return select - step.rows[0]
        return self.block(step.q_block).busiest_row

    def steps(self) -> list[TileStep]:
        return [self.step(i) for i in range(len(self.order))]

    @cached_property
    def block_tiles(self) -> dict[int, tuple[int, int]]:
        """For each Q block that visits anything: (its first, its last) KV tile."""
        out: dict[int, tuple[int, int]] = {}
        for i, j in self.order:
            out[i] = (out[i][0], j) if i in out else (j, j)
        return out

    def step(self, index: int) -> TileStep:
        tr = self.trace
        qb, kb = self.order[index]
        bm, bn, n = tr.block_m, tr.block_n, tr.n
        r0, r1 = qb * bm, min((qb + 1) * bm, n)
        c0, c1 = kb * bn, min((kb + 1) * bn, n)
        rows = r1 - r0
        m, l_, a = tr.m[qb, kb, :rows], tr.l[qb, kb, :rows], tr.alpha[qb, kb, :rows]
        d = self.distance[qb, kb, :rows]
        first, last = self.block_tiles[qb]
        return TileStep(
            walk=self,
            step=index,
            q_block=qb,
            kv_block=kb,
            state=int(tr.tile_state[qb, kb]),
            rows=(r0, r1),
            keys=(c0, c1),
            first_in_block=kb == first,
            last_in_block=kb == last,
            mean_m=_nanmean(m),
            mean_l=_nanmean(l_),
            min_alpha=_nanmin(a),
            mean_distance=_nanmean(d),
            max_distance=_nanmax(d),
            rescales=int(self.fa2_rescale[qb, kb, :rows].sum()),
            fa4_rescales=int(self.fa4_rescale[qb, kb, :rows].sum()),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-able: the trace's scalar facts plus what the walk derived."""
        return {
            **self.trace.summary(),
            "backend_label": self.backend_label,
            "n_prompt": self.n_prompt,
            "steps": len(self.order),
            "hbm": self.hbm,
            "unsafe_softmax": self.unsafe,
            "fa4": {
                "tau_log2": FA4_TAU_LOG2,
                "fa2_rescales": int(self.fa2_rescale.sum()),
                "fa4_rescales": int(self.fa4_rescale.sum()),
                "row_tile_updates": int((~np.isnan(self.tile_rowmax)).sum()),
            },
            "final_distance_max": _nanmax(self.final_distances()),
            **self.info,
        }

    def final_distances(self) -> np.ndarray:
        """||O_partial − O_kernel|| of every row after its Q block's last tile (the kernel's rounding error)."""
        out = []
        for qb, (_, last) in sorted(self.block_tiles.items()):
            rows = min(self.trace.block_m, self.trace.n - qb * self.trace.block_m)
            out.append(self.distance[qb, last, :rows])
        return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class BlockSeries:
    """One Q block's series over its KV tiles, arrays [n_kv_blocks, rows] (NaN where not visited), with axis
    ranges that hold for the whole block (the plots do not rescale while its tiles are walked)."""

    rows: int  # the block's real rows
    busiest_row: int  # the row that rescaled most (the last of them on ties), 0-based within the block
    m: np.ndarray  # the kernel's running max after each tile (natural units)
    tile_max: np.ndarray  # each tile's own row max
    l: np.ndarray  # noqa: E741 - the paper's name
    alpha: np.ndarray  # the rescale factor, NaN where 0 (a row's first tile: nothing to rescale yet)
    distance: np.ndarray  # ||acc / l − O_final||
    fa4_max: np.ndarray  # the stale max FA-4 runs with
    m_range: tuple[float, float]  # over m and the tiles' maxima
    l_range: tuple[float, float]  # positive: l, α > 0 and 1, for a log axis
    d_max: float

    @classmethod
    def of(cls, walk: AttentionWalk, qb: int) -> BlockSeries:
        tr = walk.trace
        rows = min(tr.block_m, tr.n - qb * tr.block_m)
        m = tr.m[qb, :, :rows]
        tmax = walk.tile_rowmax[qb, :, :rows]
        lv = tr.l[qb, :, :rows]
        alpha = tr.alpha[qb, :, :rows]
        dist = walk.distance[qb, :, :rows]
        rescales = walk.fa2_rescale[qb, :, :rows].sum(0)
        both = np.concatenate([m[~np.isnan(m)], tmax[~np.isnan(tmax)]])
        a_pos = alpha[(alpha > 0) & ~np.isnan(alpha)]
        l_ok = lv[~np.isnan(lv)]
        d_ok = dist[~np.isnan(dist)]
        return cls(
            rows=rows,
            busiest_row=int(np.flatnonzero(rescales == rescales.max())[-1]),
            m=m,
            tile_max=tmax,
            l=lv,
            alpha=np.where(alpha > 0, alpha, np.nan),
            distance=dist,
            fa4_max=walk.fa4_max[qb, :, :rows],
            m_range=(float(both.min()), float(both.max())) if both.size else (0.0, 1.0),
            l_range=(
                float(min(l_ok.min(), a_pos.min() if a_pos.size else 1.0, 1.0)) if l_ok.size else 0.1,
                float(max(l_ok.max(), 1.0)) if l_ok.size else 10.0,
            ),
            d_max=float(d_ok.max()) if d_ok.size else 1.0,
        )


@dataclass
class TileStep:
    """One visited tile: Q block ``q_block`` (rows ``rows[0]`` .. ``rows[1]-1``) against KV tile ``kv_block`` (keys
    ``keys[0]`` .. ``keys[1]-1``), step ``step`` of the walk. ``state`` 1 visited, 2 visited with masked entries.
    Per-tile summaries over the block's real rows: the kernel's m, l after the tile and its smallest alpha; the
    distance of the partial output from the final one; how many rows rescaled (FA2: the max grew) and how many
    FA-4 would rescale."""

    walk: AttentionWalk = field(repr=False, compare=False)
    step: int
    q_block: int
    kv_block: int
    state: int
    rows: tuple[int, int]
    keys: tuple[int, int]
    first_in_block: bool
    last_in_block: bool
    mean_m: float | None
    mean_l: float | None
    min_alpha: float | None
    mean_distance: float | None
    max_distance: float | None
    rescales: int
    fa4_rescales: int

    @property
    def masked(self) -> bool:
        return self.state == VISITED_MASKED

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "q_block": self.q_block,
            "kv_block": self.kv_block,
            "state": "masked" if self.masked else "visited",
            "rows": list(self.rows),
            "keys": list(self.keys),
            "first_in_block": self.first_in_block,
            "last_in_block": self.last_in_block,
            "mean_m": self.mean_m,
            "mean_l": self.mean_l,
            "min_alpha": self.min_alpha,
            "mean_distance": self.mean_distance,
            "max_distance": self.max_distance,
            "rescales": self.rescales,
            "fa4_rescales": self.fa4_rescales,
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _nanmean(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)]
    return _finite(float(a.mean())) if a.size else None


def _nanmin(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)]
    return _finite(float(a.min())) if a.size else None


def _nanmax(a: np.ndarray) -> float | None:
    a = a[~np.isnan(a)]
    return _finite(float(a.max())) if a.size else None


def build_walk(trace: AttentionTrace, sliding_window: int | None = None, n_prompt: int | None = None) -> AttentionWalk:
    """Everything the view draws, computed once from ``trace`` (float64 numpy; see the module docstring).
    ``sliding_window``: the model's window when the trace's mask is "sliding_window" (else ignored)."""
    meta = trace.meta
    n, bm, bn = trace.n, trace.block_m, trace.block_n
    nq, nkv = trace.tile_state.shape
    scale = float(meta.head_dim**-0.5 if meta.scale is None else meta.scale)
    window = sliding_window if meta.mask == "sliding_window" else None
    allowed = allowed_mask(n, meta.causal, window)
    q, k, v = (x.astype(np.float64) for x in (trace.q, trace.k, trace.v))
    s = (q @ k.T) * scale
    o_final = trace.o.astype(np.float64)
    order = walk_order(trace.tile_state)

    tile_rowmax = np.full((nq, nkv, bm), np.nan, dtype=np.float32)
    distance = np.full((nq, nkv, bm), np.nan, dtype=np.float32)
    for qb in range(nq):
        r0, r1 = qb * bm, min((qb + 1) * bm, n)
        rows = r1 - r0
        m = np.full(rows, -np.inf)
        l_ = np.zeros(rows)
        acc = np.zeros((rows, q.shape[1]))
        for kb in (j for (i, j) in order if i == qb):
            c0, c1 = kb * bn, min((kb + 1) * bn, n)
            st = np.where(allowed[r0:r1, c0:c1], s[r0:r1, c0:c1], -np.inf)
            t = st.max(1)
            m_new = np.maximum(m, t)
            m_use = np.where(np.isinf(m_new), 0.0, m_new)  # a row with nothing allowed yet: scale by 0, never NaN
            alpha = np.exp(m - m_use)
            p = np.exp(st - m_use[:, None])
            l_ = l_ * alpha + p.sum(1)
            acc = acc * alpha[:, None] + p @ v[c0:c1]
            m = m_new
            partial = acc / np.where(l_ > 0, l_, 1.0)[:, None]
            tile_rowmax[qb, kb, :rows] = np.where(np.isfinite(t), t, np.nan)
            distance[qb, kb, :rows] = np.linalg.norm(partial - o_final[r0:r1], axis=1)
    fa2, fa4, fa4_max = fa4_rescales(tile_rowmax)
    return AttentionWalk(
        trace=trace,
        scores=np.ascontiguousarray(s, dtype=np.float32),
        allowed=allowed,
        order=order,
        tile_rowmax=tile_rowmax,
        distance=distance,
        fa2_rescale=fa2,
        fa4_rescale=fa4,
        fa4_max=fa4_max,
        hbm=hbm_traffic(n, meta.head_dim, bn, trace.tile_state, meta.dtype, meta.causal),
        unsafe=unsafe_softmax(s, allowed),
        backend_label=backend_label(meta.backend),
        n_prompt=n if n_prompt is None else int(n_prompt),
    )


def continue_prompt(lm: LoadedModel, prompt_ids: Sequence[int], length: int) -> list[int]:
    """The prompt continued with the model's own greedy tokens up to ``length`` tokens in all (nothing is added to
    a prompt that long already; clipped below the model's context), so that a trace spans several tiles."""
    ids = [int(i) for i in prompt_ids]
    room = lm.config.max_position_embeddings - len(ids)  # the traced sequence fills at most the whole context
    extra = max(0, min(int(length) - len(ids), room))
    if extra and ids:
        ids += generate(lm, ids, extra, stop_at_eos=False)
    return ids


def attention_walk(lm: LoadedModel, prompt_ids: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[TileStep]:
    """One :class:`TileStep` per visited tile of :func:`compute_walk`'s walk (same arguments), in the kernel's
    order."""
    yield from compute_walk(lm, prompt_ids, *args, **kwargs).steps()


def compute_walk(
    lm: LoadedModel,
    prompt_ids: Sequence[int],
    layer: int,
    head: int,
    block_m: int = 32,
    block_n: int = 32,
    causal: bool = True,
    dtype: str = "float32",
    backend: str = "auto",
    length: int = 0,
) -> AttentionWalk:
    """Continue the prompt with the model's own greedy tokens up to ``length`` tokens in all (a short prompt alone
    would fit in one tile; nothing is added to a prompt that long already; clipped below the model's context),
    trace head ``head`` of layer ``layer`` on the result and derive the walk."""
    n_prompt = len(prompt_ids)
    ids = continue_prompt(lm, prompt_ids, length)
    trace = trace_attention(lm, ids, layer, head, block_m, block_n, causal, dtype, backend)
    return build_walk(trace, sliding_window=lm.config.sliding_window, n_prompt=n_prompt)
