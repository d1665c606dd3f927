"""Ctrl-C and SIGTERM that are never lost: both raise (KeyboardInterrupt, or :class:`Terminated` for SIGTERM) so
that every ``finally`` runs and outputs being written are discarded (see explorer.atomic).

Code that calls into Qt while rendering wraps its loop in :func:`deferred` and calls :func:`check` between
frames: there a signal only sets a flag, because an exception raised inside a Qt virtual override (a paint or
event handler) is printed and swallowed by PySide, and the recording would go on. Qt-free.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending: int | None = None
_deferred = 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C."""


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame) -> None:
    global _pending
    _pending = signum
    if _deferred == 0:
        _pending = None
        raise _exception(signum)


def ending(signum, frame) -> None:
    """The SIGTERM handler of a process already on its way out with its own error (rank 0 naming a failed rank,
    when torchrun's SIGTERM for the same failure lands meanwhile): the error stays the line the process prints.
    :func:`interrupts` leaves it in place when its block ends."""


def check() -> None:
    """Raise the interruption a signal asked for while deferred."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise _exception(signum)


def take_pending() -> int | None:
    """The signal a :func:`deferred` block is holding (``None`` if none), now taken over by the caller: the GUI's
    event loop, whose own handlers start inside the launch's deferred block so that no signal falls between."""
    global _pending
    signum, _pending = _pending, None
    return signum


@contextmanager
def deferred() -> Iterator[None]:
    """Within this block a signal only sets a flag; :func:`check` (and the block's end) raise it."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
    check()


@contextmanager
def interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise for the duration (main thread only; the previous handlers come back after, except
    :func:`ending`, installed inside)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending = None
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            if signal.getsignal(s) is not ending:
                signal.signal(s, h)
