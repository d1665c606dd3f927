"""The loss-scaling view: a histogram against the FP16 bands, the scale timeline and per-layer heatmaps."""

from .view import AmpView

__all__ = ["AmpView"]
