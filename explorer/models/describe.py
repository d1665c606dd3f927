"""What the generate view says about a decoding step (Qt-free): the header, the text so far with the new token
marked, the bars' labels and tour caption fields. Colours come in as plain strings (the view's theme)."""

from __future__ import annotations

import html
from typing import Any

from .generate import GenerateRecord
from .text import visible_token

BAR_LABEL_INSIDE = 0.85  # a bar longer than this carries its probability inside its end, in the accent's text colour


def mode_text(r: GenerateRecord) -> str:
    """How the token was chosen: greedy, or T = 0.8, top-k 40."""
    return "greedy" if r.temperature <= 0 else f"T = {r.temperature:g}" + (f", top-k {r.top_k}" if r.top_k else "")


def header_html(r: GenerateRecord, n_steps: int, *, accent: str, muted: str, seconds: bool) -> str:
    """The step, the chosen token with its probability, rank and the entropy, the mode, and (``seconds``: not in a
    recording) the forward's time."""
    return (
        f"<b style='font-size:125%'>step {r.step + 1} of {n_steps}</b>"
        f"&nbsp;&nbsp; chosen <b style='color:{accent}'>{html.escape(visible_token(r.token_text, 24))}</b>"
        f" (id {r.token_id}) &nbsp; p = <b>{r.chosen_prob:.3f}</b> &nbsp; rank {r.chosen_rank + 1}"
        f" &nbsp; entropy <b>{r.entropy_bits:.2f}</b> bits &nbsp; {mode_text(r)}"
        + (f" &nbsp; <span style='color:{muted}'>{r.seconds * 1000:.1f} ms</span>" if seconds else "")
    )


def text_html(prompt: str, before: str, token: str, *, muted: str, text: str, highlight_bg: str) -> str:
    """The prompt (muted), the tokens chosen before this step, and this step's token highlighted (a whitespace
    token shows its line breaks as ⏎)."""
    shown = html.escape(token).replace("\n", "⏎\n") if token.strip() == "" else html.escape(token)
    return (
        f"<pre style='white-space:pre-wrap; margin:0'>"
        f"<span style='color:{muted}'>{html.escape(prompt)}</span>"
        f"<span style='color:{text}'>{html.escape(before)}</span>"
        f"<span style='background-color:{highlight_bg}; color:{text}; font-weight:bold'>{shown}</span>"
        f"</pre>"
    )


def trend_title(bar: str, accent: str) -> str:
    """The trend plot's legend, which lives in its title (a legend box covered the curves)."""
    return f"<span style='color:{bar}'>━ entropy, bits</span> &nbsp; <span style='color:{accent}'>━ p(chosen)</span>"


def bar_label(p: float) -> tuple[str, bool]:
    """A bar's probability label, and whether it sits inside the bar's end (a long bar) rather than after it."""
    return f"{p:.3f}", p > BAR_LABEL_INSIDE


def caption_fields(r: GenerateRecord) -> dict[str, Any]:
    """The live numbers a tour caption may name at step ``r``."""
    return {
        "token": visible_token(r.token_text, 24),
        "p": r.chosen_prob,
        "rank": r.chosen_rank + 1,
        "entropy": r.entropy_bits,
    }
