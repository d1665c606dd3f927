"""Attention backends the model can plug in (see :class:`explorer.model.AttentionFn`)."""

from __future__ import annotations

from .model import AttentionFn, sdpa_attention

BACKENDS: dict[str, AttentionFn] = {"sdpa": sdpa_attention}


def available_backends() -> list[str]:
    return list(BACKENDS)
