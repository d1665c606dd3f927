"""The generate view: the text so far, the next-token distribution and the entropy trend."""

from .view import GenerateView

__all__ = ["GenerateView"]
