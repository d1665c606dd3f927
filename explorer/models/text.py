"""How token text is shown: whitespace made visible, so a bar labelled '⏎··' is not an empty label."""

from __future__ import annotations

VISIBLE = {"\n": "⏎", "\t": "⇥", " ": "·", "\r": "␍"}


def visible_token(text: str, limit: int = 16) -> str:
    shown = "".join(VISIBLE.get(c, c) for c in text)
    if not shown:
        return "∅"
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
