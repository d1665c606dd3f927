"""The attention view: the score matrix with the kernel's tiles, the current Q block's online-softmax state and
the header, each a panel of its own; the view wires them to the records."""

from .view import AttentionView

__all__ = ["AttentionView"]
