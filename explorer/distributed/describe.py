"""What the ddp view says and draws about a ring step (Qt-free): the header, the check line, the ring's geometry,
the chunk grid's labels, the per-rank timeline's bars, the cost panel's curves and tour caption fields. Colours
come in as plain strings (the view's theme)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cost import AlphaBeta
from .records import DdpStep, RingFrame
from .ring import PHASES

# one colour per chunk (and per DDP bucket), readable on the light and the dark theme
CHUNK_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")


def chunk_color(c: int) -> str:
    return CHUNK_COLORS[c % len(CHUNK_COLORS)]


def human_bytes(b: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if b < 1024:
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} GiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def phase_line(f: RingFrame) -> str:
    """'reduce-scatter 2 of 3: each rank sends one chunk to its right neighbour and adds the one it receives'."""
    n = f.step.ranks
    what = "adds the one it receives to its own" if f.phase == PHASES[0] else "keeps the finished one it receives"
    return f"{f.phase} {f.ring_step + 1} of {n - 1}: each rank sends one chunk to its right neighbour and {what}"


def check_line(step: DdpStep) -> str:
    """The checks, in numbers: the ring against dist.all_reduce and DDP, DDP against one process."""
    c = step.ring_check
    f64 = "float64 exact" if c["exact_float64"] else f"float64 max |Δ| {c['max_abs_diff_float64']:.2g}"
    parts = [f"ring = dist.all_reduce: max |Δ| {c['max_abs_diff']:.2g} in {c['dtype']} (rounding bound "
             f"{c['bound']:.2g}), {f64}", f"ring ÷ N = DDP's bucket: max |Δ| {step.ring_vs_ddp:.2g}"]  # fmt: skip
    if step.one_process:
        o = step.one_process
        parts.append(f"DDP = one process on the whole batch: max |Δg| {o['max_abs_diff']:.2g} (max |g| "
                     f"{o['max_abs_grad']:.2g})")  # fmt: skip
    return " · ".join(parts)


def header_html(f: RingFrame, frames: int, *, muted: str, accent: str, seconds: bool) -> str:
    s = f.step
    bucket = next((b for b in s.buckets if b.index == s.ring_bucket), None)
    size = human_bytes(bucket.bytes) if bucket else f"{s.ring_numel} values"
    moved = sum(m["bytes_sent"] for m in f.moves)
    chunk = human_bytes(max(m["bytes_sent"] for m in f.moves))
    took = f" · slowest rank {ms(max(m['seconds'] for m in f.moves))}" if seconds else ""
    buckets = f"{len(s.buckets)} bucket" + ("s" if len(s.buckets) != 1 else "")
    first = (f"<b>step {s.step}</b> · ring step {f.index + 1} of {frames} · loss {s.loss:.4f} · "
             f"{s.ranks} ranks · bucket {s.ring_bucket} ({size}, {buckets} this step)")  # fmt: skip
    second = (
        f"<span style='color:{accent}'>{phase_line(f)}</span> · chunks of {chunk}, {human_bytes(moved)} moved{took}"
    )
    return f"{first}<br>{second}<br><span style='color:{muted}'>{check_line(s)}</span>"


# ---------------------------------------------------------------- the ring


def ring_positions(n: int) -> np.ndarray:
    """[n, 2]: rank r at angle 90° − r·360°/n (rank 0 on top, clockwise), radius 1."""
    angles = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


@dataclass(frozen=True)
class Move:
    """One chunk on its way: from rank to rank, which chunk, its label."""

    src: int
    dst: int
    chunk: int
    label: str


def moves(f: RingFrame) -> list[Move]:
    """The chunks in flight, named by chunk (their bytes are in the header)."""
    return [Move(m["rank"], m["sent_to"], m["sent_chunk"], f"c{m['sent_chunk']}") for m in f.moves]


def node_label(f: RingFrame, rank: int) -> str:
    """A rank's label: its shard of the batch and the chunk it received (with its value's first figure)."""
    m = f.moves[rank]
    a, b = f.step.rows[rank]
    got = f"got c{m['recv_chunk']}" + (f": {m['preview'][0]:+.3g}" if m["preview"] else "")
    if f.step.ranks > 4:
        return got
    rows = f"row {a}" if b - a == 1 else f"rows {a}–{b - 1}"
    return f"rank {rank}\n{rows}\n{got}"


# ---------------------------------------------------------------- the chunk grid


def grid_text(f: RingFrame) -> list[tuple[int, int, str, bool]]:
    """(rank, chunk, 'k/N', received this step) per cell."""
    n = f.step.ranks
    received = {(m["rank"], m["recv_chunk"]) for m in f.moves}
    return [(r, c, f"{int(f.grid[r, c])}/{n}", (r, c) in received) for r in range(n) for c in range(n)]


# ---------------------------------------------------------------- the timeline


@dataclass(frozen=True)
class Bar:
    rank: int
    start: float  # ms
    end: float  # ms
    kind: str  # "forward", "backward", "bucket"
    bucket: int = -1


def timeline_bars(s: DdpStep) -> list[Bar]:
    """Per rank: forward, backward (until its last gradient was ready), and each bucket's all-reduce."""
    bars = []
    for r in range(s.ranks):
        ready = s.ready[r][np.isfinite(s.ready[r])]
        compute_end = float(ready.max()) if ready.size else float(s.backward[r, 1])
        bars.append(Bar(r, 1e3 * s.forward[r], 1e3 * s.backward[r, 0], "forward"))
        bars.append(Bar(r, 1e3 * s.backward[r, 0], 1e3 * compute_end, "backward"))
        for b in s.buckets:
            if math.isfinite(b.finish[r]):
                bars.append(Bar(r, 1e3 * b.start[r], 1e3 * b.finish[r], "bucket", b.index))
    return bars


def overlap_share(s: DdpStep) -> float:
    """The share of bucket all-reduce time (summed over ranks and buckets) that ran while that rank's backward was
    still computing gradients."""
    total = hidden = 0.0
    for r in range(s.ranks):
        ready = s.ready[r][np.isfinite(s.ready[r])]
        end = float(ready.max()) if ready.size else float(s.backward[r, 1])
        for b in s.buckets:
            a, z = float(b.start[r]), float(b.finish[r])
            if math.isfinite(z) and z > a:
                total += z - a
                hidden += max(0.0, min(z, end) - a)
    return hidden / total if total > 0 else 0.0


def bucket_sizes(s: DdpStep) -> tuple[list[int], list[float]]:
    return [b.index for b in s.buckets], [b.bytes / 2**20 for b in s.buckets]


# ---------------------------------------------------------------- the cost panel

ALGORITHMS = ("ring", "tree", "direct")


def link_bytes(n: int, size: float) -> dict[str, float]:
    """Bytes through the busiest rank's link for one all-reduce of ``size`` bytes (no clock: the recorded panel)."""
    return {"ring": 2 * (n - 1) / n * size, "tree": 2 * math.ceil(math.log2(n)) * size if n > 1 else 0.0,
            "direct": 2 * (n - 1) * size}  # fmt: skip


def model_curves(model: AlphaBeta, n: int, sizes: np.ndarray) -> dict[str, np.ndarray]:
    return {a: np.array([getattr(model, a)(n, float(s)) for s in sizes]) for a in ALGORITHMS}


def cost_caption(model: AlphaBeta, n: int, bucket_bytes: float) -> str:
    best = model.best(n, bucket_bytes)
    tree, direct = model.wins_below(n, "tree"), model.wins_below(n, "direct")
    wins = [f"{name} below {human_bytes(x)}" for name, x in (("tree", tree), ("direct", direct)) if x > 0]
    return (f"α {model.alpha * 1e6:.0f} µs, β {model.beta / 2**20:.0f} MiB/s · this bucket: {best} fastest · "
            + ("; ".join(wins) if wins else "the ring wins at every size"))  # fmt: skip


# ---------------------------------------------------------------- titles, longest first (the kit's TitleFitter)


def ring_titles(f: RingFrame) -> list[str]:
    n = f.step.ranks
    return [f"the ring: {n} ranks, {f.phase} {f.ring_step + 1}/{n - 1}, one chunk to the right neighbour",
            f"the ring: {f.phase} {f.ring_step + 1}/{n - 1}", f"{f.phase} {f.ring_step + 1}/{n - 1}"]  # fmt: skip


def grid_titles(f: RingFrame) -> list[str]:
    return ["ranks summed into each rank's copy of each chunk (outlined: received now)",
            "ranks summed into each copy (outlined: now)", "ranks summed per chunk"]  # fmt: skip


def timeline_titles(s: DdpStep) -> list[str]:
    share = f"{overlap_share(s):.0%}"
    return [f"backward vs DDP's bucket all-reduces per rank: {share} of all-reduce time under backward",
            f"backward vs bucket all-reduce: {share} overlapped", f"{share} overlapped"]  # fmt: skip


def bucket_titles(s: DdpStep, cap_mb: float) -> list[str]:
    return [f"DDP's {len(s.buckets)} buckets at step {s.step} in reduce order (MiB, line: the {cap_mb:g} MiB cap)",
            f"{len(s.buckets)} buckets (MiB, cap {cap_mb:g})"]  # fmt: skip


def link_titles(n: int, clock: bool) -> list[str]:
    note = " (no timings in this run)" if clock else ""
    return [f"bytes through the busiest link per all-reduce, N = {n}{note}", f"busiest link's bytes, N = {n}"]


def cost_titles(model: AlphaBeta, n: int, bucket_bytes: float) -> list[str]:
    full = cost_caption(model, n, bucket_bytes)
    return [full, full.split(" · ")[0] + " · " + full.split(" · ")[1], full.split(" · ")[0]]


def caption_fields(f: RingFrame) -> dict:
    s = f.step
    return {"phase": f.phase, "ring_step": f.ring_step + 1, "ranks": s.ranks, "train_step": s.step,
            "loss": round(s.loss, 4), "buckets": len(s.buckets)}  # fmt: skip
