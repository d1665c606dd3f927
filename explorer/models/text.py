"""How token text is shown: whitespace made visible, so a bar labelled '⏎··' is not an empty label."""

from __future__ import annotations

VISIBLE = {"\n": "⏎", "\t": "⇥", " ": "·", "\r": "␍"}


def visible_token(text: str, limit: int = 16) -> str:
    shown = "".join(VISIBLE.get(c, c) for c in text)
    if not shown:
        return "∅"
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def reply_text(tokenizer, ids: list[int], end_ids: tuple[int, ...] = ()) -> str:
    """What a model said, as a reader sees it: the decoded ids without end-of-turn, BOS/EOS and other control
    tokens (the tokenizer's special tokens, and ``end_ids``, the model's eos ids), which are markers, not text."""
    return tokenizer.decode([i for i in ids if i not in end_ids], skip_special_tokens=True)
