"""What the backward costs in memory (Qt-free): the same forward run three ways — with autograd, under activation
checkpointing (``torch.utils.checkpoint``, non-reentrant, one checkpoint per decoder layer) and under
``torch.no_grad()`` — each with the tensor bytes it kept after the forward and its measured peak.

Measured, not estimated: :class:`LiveTensorBytes` is a ``TorchDispatchMode`` that sees every op (the backward's
too) and counts each new storage an op returns until torch frees it (a finalizer on the storage, which torch keeps
alive exactly as long as the memory). tracemalloc cannot do this: torch's CPU allocator bypasses Python's.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.checkpoint import checkpoint

from .graph import Setup, forward_loss
from .records import MemoryMode


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the storages created by ops run under this mode and not yet freed; ``peak`` is the highest."""

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self._live.discard(key)
        self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in given or key in self._live:  # a view of an input, or already counted
                continue
            self._live.add(key)
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._freed, key, storage.nbytes())
        return out


class SavedBytes:
    """``saved_tensors_hooks`` counting the unique storages autograd saves, parameters apart."""

    def __init__(self, setup: Setup):
        self.params = {p.untyped_storage().data_ptr() for p in setup.model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.params:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _checkpointed(fn, *args):
    return checkpoint(fn, *args, use_reentrant=False)


def measure(setup: Setup, mode: str) -> MemoryMode:
    """One fresh forward (and, except under no_grad, its backward) of ``setup`` run as ``mode``."""
    saved = SavedBytes(setup)
    live = LiveTensorBytes()
    grad = mode != "no_grad"
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t), torch.set_grad_enabled(grad), live:
        loss, _ = forward_loss(setup, wrap=_checkpointed if mode == "checkpoint" else None)
        kept, forward_peak = live.current - loss.untyped_storage().nbytes(), live.peak
        if grad:
            loss.backward()
    for p in setup.model.parameters():
        p.grad = None
    return MemoryMode(mode, kept, forward_peak, live.peak, saved.total)


MODES = ("autograd", "checkpoint", "no_grad")


def compare_modes(setup: Setup) -> list[MemoryMode]:
    return [measure(setup, mode) for mode in MODES]
