"""What the loss-scaling view says and draws about a training step (Qt-free): the header, the band counts under the
histogram, the histogram's title, tour caption fields, and the per-layer shares of the heatmaps. Colours come in
as plain strings (the view's theme), so that every word and number here is testable without a window."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bands import BANDS, HIST_MAX, HIST_MIN
from .engine import group_of
from .records import StepRecord

STOP_COLOR = "#e4572e"  # a run that stopped early, and inf/NaN notes: the overflow band's red
FIRST_TINT = 0.02  # the heatmaps' first visible colour, as a fraction of the colour scale's top
EVENT_WORDS = {"growth": "grow ×2", "backoff": "back off ×½", "stop": "stopped"}
# bin edges of the step-drawn histogram: bin 0 is "< 2^-40", bins 1..61 are k = -40..20, the last ">= 2^21"
HIST_EDGES = np.arange(HIST_MIN - 1, HIST_MAX + 3, dtype=float)


@dataclass(frozen=True)
class Gradients:
    """The gradients one step shows (parameter or activation gradients): band counts per group, unscaled and
    scaled, the log2 |g| histograms per group, and the parameter values the fp16 backward lost (None otherwise)."""

    unscaled: np.ndarray | None
    scaled: np.ndarray | None
    hist_unscaled: np.ndarray | None
    hist_scaled: np.ndarray | None
    lost: np.ndarray | None = None
    hist_reference: np.ndarray | None = None


def gradients(r: StepRecord, activation: bool) -> Gradients:
    if activation:
        return Gradients(r.act_unscaled, r.act_scaled, r.act_hist_unscaled, r.act_hist_scaled)
    return Gradients(r.param_unscaled, r.param_scaled, r.param_hist_unscaled, r.param_hist_scaled,
                     r.param_lost, r.param_hist_reference)  # fmt: skip


# ---------------------------------------------------------------- words and numbers


def status_word(r: StepRecord) -> str:
    return "overflow → step skipped" if r.skipped else ("overflow" if r.found_inf else "clean")


def event_word(r: StepRecord, none: str = "") -> str:
    return EVENT_WORDS.get(r.event or "", none)


def pct(part: int, whole: int) -> str:
    p = 100 * part / max(whole, 1)
    return f"{p:.0f}%" if p >= 10 else f"{p:.1f}%" if p >= 0.1 else f"{p:.2f}%"


def nice_top(x: float) -> float:
    """A colour-scale top that reads well (1, 2, 5 times a power of ten), at least 1%."""
    if x <= 1:
        return 1.0
    k = 10 ** math.floor(math.log10(x))
    return next(m * k for m in (1, 2, 5, 10) if x <= m * k)


def first_tint_level(top: float) -> float:
    """The smallest share (percent) a heatmap cell is drawn at when it is not zero: the colour scale's first visible
    tint, so that one inf among millions of values still shows (its number is unchanged; only its colour is)."""
    return FIRST_TINT * top


def visible_cells(img: np.ndarray, top: float) -> np.ndarray:
    """The cells as drawn: zero stays the background, anything above it at least the first visible tint."""
    return np.where(img > 0, np.maximum(img, first_tint_level(top)), 0.0).astype(np.float32)


def overflow_row(r: StepRecord, groups: Sequence[str]) -> int | None:
    """The heatmap row of the layer group where step ``r`` first overflowed (None on a clean step)."""
    if not r.first_overflow:
        return None
    group = group_of(r.first_overflow)
    return groups.index(group) if group in groups else None


def scale_text(scale: float) -> str:
    """2^29 rather than 5.36871e+08: loss scales are powers of two in every policy but a static one."""
    k = math.log2(scale) if scale > 0 else math.nan
    return f"2^{k:.0f}" if math.isfinite(k) and k == round(k) else f"{scale:g}"


def group_label(group: str) -> str:
    """A heatmap row's label: 'layers.3' -> 'L3'."""
    return group.replace("layers.", "L")


def thinned_rows(n: int, every: int) -> list[int]:
    """The rows that get a label when only every ``every``-th fits: the first and last always, the last never
    crowding its neighbour."""
    shown = [i for i in range(n) if i % every == 0 or i == n - 1]
    if len(shown) > 1 and shown[-1] - shown[-2] < every:
        shown.pop(-2)
    return shown


# ---------------------------------------------------------------- text


def band_html(g: Gradients, scale: float, accent: str) -> str:
    """The band counts under the histogram: unscaled and scaled gradients, and what the fp16 backward lost."""
    bands_un, bands_sc = g.unscaled.sum(0), g.scaled.sum(0)
    total = max(int(bands_un.sum()), 1)

    def share(b: np.ndarray, name: str) -> str:
        v = int(b[BANDS.index(name)])
        return f"{v:,} ({100 * v / total:.2f}%)"

    lost_text = ""
    if g.lost is not None:
        n_lost = int(g.lost.sum())
        lost_text = (
            f"<br><b>lost in the fp16 backward</b> (zero here, non-zero in an fp32 backward of the same batch): "
            f"{n_lost:,} ({100 * n_lost / total:.2f}%)"
        )
    return (
        f"<b>unscaled g</b>: flushed {share(bands_un, 'flushed')}, subnormal {share(bands_un, 'subnormal')},"
        f" overflow {share(bands_un, 'overflow')}, inf/NaN {share(bands_un, 'inf_nan')}<br>"
        f"<b style='color:{accent}'>scaled g × {scale_text(scale)}</b>: flushed {share(bands_sc, 'flushed')},"
        f" subnormal {share(bands_sc, 'subnormal')}, overflow {share(bands_sc, 'overflow')},"
        f" inf/NaN {share(bands_sc, 'inf_nan')}{lost_text}"
    )


def nonfinite_note(g: Gradients) -> str:
    """A note such as "86% inf/NaN / not drawn" when the scaled gradients hold enough inf/NaN to say so (the
    histogram's bins hold finite values only), else ""."""
    total = max(int(g.unscaled.sum(0).sum()), 1)
    bad = int(g.scaled.sum(0)[BANDS.index("inf_nan")])
    return f"{pct(bad, total)} inf/NaN\nnot drawn" if bad / total >= 0.0005 else ""


def loss_line(g: Gradients, scale: float) -> str:
    """What scaling saves: the share lost to zero without and with it (against the fp32 reference when there is
    one, else the values a cast to fp16 flushes)."""
    bands_un, bands_sc = g.unscaled.sum(0), g.scaled.sum(0)
    total = max(int(bands_un.sum()), 1)
    flushed_un = bands_un[BANDS.index("flushed")] / total
    flushed_sc = bands_sc[BANDS.index("flushed")] / total
    if g.lost is not None:
        gone = int(g.lost.sum()) / total
        return (
            f"lost to zero: {100 * (flushed_un + gone):.2f}% of parameter-gradient values without scaling, "
            f"{100 * (flushed_sc + gone):.2f}% with S = {scale_text(scale)} (against an fp32 backward; "
            "Micikevicius et al.)"
        )
    return (
        f"flushed to zero: {100 * flushed_un:.2f}% of gradient values without scaling, "
        f"{100 * flushed_sc:.2f}% with it (Micikevicius et al.)"
    )


def header_html(r: StepRecord, n_steps: int, policy: str, dtype: str, stopped: str | None, g: Gradients, *,
                muted: str, seconds: bool) -> str:  # fmt: skip
    """The view's header: the step, the scaler, the loss, the scale's move and the decision, what scaling saves,
    and (``seconds``: not in a recording) the step's time."""
    first = f" · first overflow in <b>{r.first_overflow}</b>" if r.first_overflow else ""
    stop = f"<br><b style='color:{STOP_COLOR}'>{stopped}</b>" if stopped else ""
    spike = f" × {r.loss_factor:g} (spike)" if r.loss_factor != 1 else ""
    return (
        f"<b style='font-size:120%'>step {r.step + 1} of {n_steps}</b> &nbsp; {policy} scaler,"
        f" {dtype} autocast &nbsp; loss <b>{r.loss:.3f}</b>"
        f"{spike} &nbsp; scale 2^{np.log2(r.scale):.0f} →"
        f" 2^{np.log2(r.next_scale):.0f} &nbsp; <b>{status_word(r)}</b> {event_word(r)} &nbsp; growth tracker"
        f" {r.growth_tracker}{first}<br><span style='color:{muted}'>{loss_line(g, r.scale)}"
        f"{f' · {r.seconds:.2f} s' if seconds else ''}</span>"
        f"{stop}"
    )


def hist_title_variants(reference: bool, bar: str, accent: str, muted: str) -> list[str]:
    """The histogram's legend, which lives in its title (a legend box inside the plot covered the bars): the long
    wording first, then the short one."""
    variants = []
    for un, sc, fp in (("unscaled g", "scaled g × S", "fp32 reference"), ("g", "g × S", "fp32")):
        variants.append(
            f"<span style='color:{bar}'>━ {un}</span> &nbsp;<span style='color:{accent}'>━ {sc}</span>"
            + (f" &nbsp;<span style='color:{muted}'>┅ {fp}</span>" if reference else "")
        )
    return variants


def caption_fields(r: StepRecord, records: Sequence[StepRecord], activation: bool) -> dict[str, Any]:
    """The live numbers a tour caption may name at step ``r``."""
    g = gradients(r, activation)
    fields: dict[str, Any] = {
        "loss": r.loss,
        "scale_log2": int(round(np.log2(r.scale))),
        "next_scale_log2": int(round(np.log2(r.next_scale))),
        "status": status_word(r),
        "event": event_word(r, "none"),
        "first_overflow": r.first_overflow or "none",
        "skipped": sum(x.skipped for x in records[: r.step + 1]),
    }
    if g.unscaled is not None:
        total = max(int(g.unscaled.sum()), 1)
        fields["flushed_unscaled"] = 100 * float(g.unscaled[:, BANDS.index("flushed")].sum()) / total
        fields["flushed_scaled"] = 100 * float(g.scaled[:, BANDS.index("flushed")].sum()) / total
    return fields


# ---------------------------------------------------------------- numbers drawn


def layer_shares(records: Sequence[StepRecord], activation: bool, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """The heatmaps' cells, in percent, one row per layer group and one column per step (``columns`` wide, the
    steps not reached yet left 0): the scaled values that overflow or are inf/NaN, and the values lost to zero
    without scaling (flushed by g / S, or already zero in the fp16 backward where the fp32 reference says)."""
    over, flushed = [], []
    for x in records:
        g = gradients(x, activation)
        tot = np.maximum(g.scaled.sum(1), 1)
        over.append((g.scaled[:, BANDS.index("overflow")] + g.scaled[:, BANDS.index("inf_nan")]) / tot)
        gone = g.unscaled[:, BANDS.index("flushed")].astype(float)
        if g.lost is not None:
            gone = gone + g.lost
        flushed.append(gone / np.maximum(g.unscaled.sum(1), 1))
    rows = gradients(records[-1], activation).unscaled.shape[0]
    over_img = np.zeros((rows, columns), dtype=np.float32)
    flush_img = np.zeros_like(over_img)
    over_img[:, : len(records)] = 100 * np.array(over).T
    flush_img[:, : len(records)] = 100 * np.array(flushed).T
    return over_img, flush_img
