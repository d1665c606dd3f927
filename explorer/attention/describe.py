"""The words and numbers the attention view shows, built from a walk's records: the header's lines, the plots'
titles (longest first: the view shows the first that fits), the legend, tooltips, the fields a tour caption may
name and the exported table. Qt-free: colours come in as CSS strings (:class:`Ink`), text goes out as the rich
text Qt labels draw."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models.text import visible_token
from .walk import AttentionWalk, TileStep

EXPORT_COLUMNS = [
    "step", "q_block", "kv_block", "state", "row_start", "row_end", "key_start", "key_end", "mean_m", "mean_l",
    "min_alpha", "mean_distance", "max_distance", "rescales", "fa4_rescales",
]  # fmt: skip
SCORES_TITLE = "scores s = q·kᵀ/√D"
# The plots' titles before a run, by plot: scores, m, l, distance.
EMPTY_TITLES = (SCORES_TITLE, "running max m per row", "l and α per row", "‖O_partial − O‖ per row")


@dataclass(frozen=True)
class Ink:
    """The colours the texts are written in (CSS): the theme's, the α series' and the passing verdict's."""

    text: str
    muted: str
    accent: str
    bar: str
    alpha: str
    ok: str


def fmt_bytes(n: float) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n:.0f} B"


def sci(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.1e}"


def muted(text: str, ink: Ink) -> str:
    return f"<span style='color:{ink.muted}'>{text}</span>"


def range_tip(model_name: str, count: int, what: str) -> str:
    """The tooltip of the layer and head settings once a model is loaded."""
    return f"{model_name} has {count} {what}: 0 .. {count - 1}"


# ---- the header


def header_html(r: TileStep, n_steps: int, ink: Ink, *, unsafe: bool, fa4: bool, worst: bool = False) -> str:
    """The header's rich text at step ``r`` of ``n_steps``; ``worst`` gives the longest text any step of this walk
    can have (the tile note of a masked last tile), whose height the header keeps so that the plots below never
    jump while stepping. ``unsafe`` and ``fa4`` add their lines."""
    w = r.walk
    lines = [_tile_line(r, n_steps, ink, worst), _shape_line(w), _accuracy_line(w, ink)]
    if unsafe:
        u = w.unsafe
        lines.append(
            f"unsafe softmax (exp(s) without max subtraction) in fp16: <b>{u['fp16_inf']}</b> of {u['scores']} "
            f"terms → inf (s > {u['fp16_threshold']:.2f}, max s = {sci(u['max_score'])}), "
            f"{u['fp16_nan_rows']} of {u['rows']} rows NaN"
        )
    if fa4:
        lines.append(
            f"FA-4 conditional rescaling (τ = 8 in log2 units): <b>{int(w.fa4_rescale.sum())}</b> rescales "
            f"instead of FA2's {int(w.fa2_rescale.sum())} (α &lt; 1) over "
            f"{int((~np.isnan(w.tile_rowmax)).sum())} row·tile updates"
        )
    return "<br>".join(lines)


def _tile_line(r: TileStep, n_steps: int, ink: Ink, worst: bool) -> str:
    """Which step, which tile, and what kind of tile it is."""
    w = r.walk
    n = w.meta.n
    nq, nkv = w.trace.tile_state.shape
    masked, last = (True, True) if worst else (r.masked, r.last_in_block)
    q_block, kv_block, rows, keys = r.q_block, r.kv_block, r.rows, r.keys
    if worst:  # the widest numbers: the last tile's
        bm, bn = w.trace.block_m, w.trace.block_n
        q_block, kv_block, rows, keys = nq - 1, nkv - 1, ((nq - 1) * bm, n), ((nkv - 1) * bn, n)
    where = "diagonal tile: entries above the diagonal masked to −∞" if masked else "full tile: no mask needed"
    if last:
        where += " · last tile of this Q block: O = acc / l, LSE = m + log l written"
    return (
        f"<b style='font-size:125%'>step {(n_steps if worst else r.step + 1)} of {n_steps}</b> &nbsp; "
        f"Q block <b>{q_block}</b> (rows {rows[0]}–{rows[1] - 1}) × KV tile <b>{kv_block}</b> "
        f"(keys {keys[0]}–{keys[1] - 1}) &nbsp; {muted(where, ink)}"
    )


def _shape_line(w: AttentionWalk) -> str:
    """What was traced: the head, the sequence, the tiles, the dtype and how the kernel ran."""
    meta = w.meta
    n = meta.n
    nq, nkv = w.trace.tile_state.shape
    gen = n - w.n_prompt
    n_text = f"N = {n}" + (f" ({w.n_prompt} prompt + {gen} generated)" if gen > 0 else "")
    return (
        f"layer {meta.layer} · head {meta.head} (kv head {meta.kv_head}) · {n_text} · D = {meta.head_dim} · "
        f"blocks {meta.block_m}×{meta.block_n} → {nq}×{nkv} tiles · {meta.dtype} · "
        f"traced by <b>{html.escape(w.backend_label)}</b> · tiles visited {meta.tiles_visited}, "
        f"skipped {meta.tiles_skipped}"
    )


def _accuracy_line(w: AttentionWalk, ink: Ink) -> str:
    """The kernel's error against float64 with Tri Dao's criterion, and the HBM traffic saved."""
    meta = w.meta
    ratio_text = "–" if meta.error_ratio is None else f"{meta.error_ratio:.2f}"
    verdict = f"<b style='color:{ink.ok if meta.within_2x_sdpa else ink.accent}'>"
    verdict += "pass</b>" if meta.within_2x_sdpa else "fail</b>"
    hbm = w.hbm
    traffic = f"HBM traffic: naive {fmt_bytes(hbm['naive_bytes'])} vs tiled {fmt_bytes(hbm['flash_bytes'])} "
    if hbm["ratio"] >= 1.05:
        traffic += f"(<b>{hbm['ratio']:.1f}×</b> less)"
    else:  # small Q blocks: K and V are read once per Q block, as often as naive attention reads them
        traffic += muted("(K, V re-read once per Q block: a larger Block M saves more)", ink)
    return (
        f"max |O − O<sub>float64</sub>|: kernel {sci(meta.max_abs_error)}, torch SDPA in {meta.dtype} "
        f"{sci(meta.sdpa_max_abs_error)} → ratio {ratio_text} (Tri Dao: ≤ 2×) {verdict} &nbsp;·&nbsp; " + traffic
    )


# ---- the plots' titles


def matrix_titles(r: TileStep, ink: Ink) -> tuple[str, ...]:
    bm, bn = r.walk.trace.block_m, r.walk.trace.block_n
    return (
        f"{SCORES_TITLE} &nbsp;<span style='color:{ink.muted}'>"
        f"({bm}×{bn} tiles, one program per Q block walks its row left to right)</span>",
        f"{SCORES_TITLE} &nbsp;<span style='color:{ink.muted}'>({bm}×{bn} tiles)</span>",
        SCORES_TITLE,
    )


def row_labels(r: TileStep, row: int) -> tuple[str, str]:
    """(long, short) names of row ``row`` of ``r``'s Q block: its index, and its token when the trace has them."""
    i = r.rows[0] + row
    label = short = f"row {i}"
    tokens = r.walk.meta.tokens
    if i < len(tokens):
        label += f" “{html.escape(visible_token(tokens[i], 10))}”"
    return label, short


def m_titles(r: TileStep, row: int, ink: Ink, fa4: bool) -> tuple[str, ...]:
    label, short = row_labels(r, row)
    rows = r.walk.block(r.q_block).rows
    fa4_note = f" &nbsp;<span style='color:{ink.text}'>┅ FA-4</span>" if fa4 else ""
    return (
        f"running max m, Q block {r.q_block}: &nbsp;<span style='color:{ink.accent}'>━ {label}</span> &nbsp;"
        f"<span style='color:{ink.muted}'>━ all {rows} rows</span> &nbsp;"
        f"<span style='color:{ink.bar}'>○ rowmax(s) of this tile</span>{fa4_note}",
        f"m: &nbsp;<span style='color:{ink.accent}'>━ {short}</span> &nbsp;"
        f"<span style='color:{ink.muted}'>━ rows</span> &nbsp;"
        f"<span style='color:{ink.bar}'>○ tile rowmax</span>{fa4_note}",
        f"m: &nbsp;<span style='color:{ink.accent}'>━ {short}</span> &nbsp;<span style='color:{ink.bar}'>○ max</span>",
    )


def m_axis_label(base2: bool) -> str:
    return f"m ({'log₂' if base2 else 'nat'})"


def l_titles(r: TileStep, row: int, ink: Ink) -> tuple[str, ...]:
    label, short = row_labels(r, row)
    return (
        f"<span style='color:{ink.bar}'>━ l = Σ exp(s − m)</span> &nbsp;"
        f"<span style='color:{ink.alpha}'>◆ α = exp(m<sub>old</sub> − m<sub>new</sub>)</span> &nbsp;"
        f"bold: {label}",
        f"<span style='color:{ink.bar}'>━ l</span> &nbsp;<span style='color:{ink.alpha}'>◆ α</span> "
        f"&nbsp;bold: {short}",
    )


def distance_titles(r: TileStep, row: int, ink: Ink) -> tuple[str, ...]:
    label, short = row_labels(r, row)
    final = f" → {sci(r.max_distance)} at the last tile" if r.last_in_block else ""
    return (
        *(
            f"‖acc/l − O<sub>final</sub>‖: &nbsp;<span style='color:{ink.bar}'>━ mean</span> &nbsp;"
            f"<span style='color:{ink.accent}'>━ {name}</span> &nbsp;"
            f"<span style='color:{ink.muted}'>━ each row</span>{final}"
            for name in dict.fromkeys((label, short))  # with the row's token, then without it
        ),
        f"‖acc/l − O‖: &nbsp;<span style='color:{ink.bar}'>━ mean</span> &nbsp;"
        f"<span style='color:{ink.accent}'>━ {short}</span>",
    )


# ---- the legend under the score matrix


def legend_html(colors: dict[str, tuple[int, int, int]], ink: Ink, unsafe: bool) -> str:
    """The score matrix's legend; ``colors``: the swatches' RGB by name (done, pending, never, masked,
    overflow)."""

    def sq(name: str, glyph: str = "■") -> str:
        r, g, b = (int(x) for x in colors[name][:3])
        return f"<span style='color:rgb({r},{g},{b}); font-size:130%'>{glyph}</span>"

    items = [
        (sq("done"), "done"),
        (f"<span style='color:{ink.accent}; font-size:130%'>□</span>", "current tile"),
        (f"<span style='color:{ink.accent}'>┅</span>", "its Q block"),
        (sq("pending"), "pending"),
        (sq("never", "▨"), "never visited (loop bounds)"),
        (sq("masked"), "masked (−∞)"),
    ]
    if unsafe:
        items.append((sq("overflow"), "exp(s) = inf in fp16"))
    return " &nbsp;&nbsp; ".join(f"{g}&nbsp;{t}" for g, t in items)


# ---- tours and export


def caption_fields(r: TileStep, row: int) -> dict[str, Any]:
    """What a tour caption may name as {field} at step ``r``; ``row``: the row singled out, within the block."""
    w = r.walk
    meta = w.meta
    nan = float("nan")
    return {
        "q_block": r.q_block,
        "kv_block": r.kv_block,
        "rows": f"{r.rows[0]}–{r.rows[1] - 1}",
        "keys": f"{r.keys[0]}–{r.keys[1] - 1}",
        "row": r.rows[0] + row,
        "tile": "diagonal (masked)" if r.masked else "full",
        "rescales": r.rescales,
        "fa4_rescales": r.fa4_rescales,
        "min_alpha": nan if r.min_alpha is None else r.min_alpha,
        "mean_distance": nan if r.mean_distance is None else r.mean_distance,
        "max_distance": nan if r.max_distance is None else r.max_distance,
        "n": meta.n,
        "tiles_visited": meta.tiles_visited,
        "tiles_skipped": meta.tiles_skipped,
        "tiles_total": meta.tiles_visited + meta.tiles_skipped,
        "hbm_ratio": w.hbm["ratio"],
        "error_ratio": nan if meta.error_ratio is None else meta.error_ratio,
        "fa2_total": int(w.fa2_rescale.sum()),
        "fa4_total": int(w.fa4_rescale.sum()),
    }


def export_table(steps: list[TileStep]) -> tuple[list[str], list[list[Any]]]:
    """(header, one row per step): the CSV export, its steps counted from 1 as the header and the player count them."""
    rows = []
    for r in steps:
        d = r.as_dict()
        rows.append(
            [r.step + 1, r.q_block, r.kv_block, d["state"], r.rows[0], r.rows[1], r.keys[0], r.keys[1], r.mean_m,
             r.mean_l, r.min_alpha, r.mean_distance, r.max_distance, r.rescales, r.fa4_rescales]
        )  # fmt: skip
    return list(EXPORT_COLUMNS), rows
