"""The data-parallel view: the ring of ranks with its chunks moving, the chunk grid, the per-rank timelines of
backward against DDP's bucket all-reduces, and the α–β cost model."""

from .view import DdpView

__all__ = ["DdpView"]
