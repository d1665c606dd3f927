"""The autograd view: the backward graph as a DAG, the engine's order on the timeline, the module tree, memory and
the in-place trap."""

from .view import AutogradView

__all__ = ["AutogradView"]
