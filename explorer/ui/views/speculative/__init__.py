"""The speculative view as a package of panels: the view (layout, rendering order, tours, export) and one module per
panel (text and header, tree, decision, mask, statistics, where it pays)."""

from .view import SpeculativeView

__all__ = ["SpeculativeView"]
