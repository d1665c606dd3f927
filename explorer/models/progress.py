"""How far a model load has got, for whoever asked (the app's progress line): a GGUF file of a real model takes
seconds to dequantize, check and fuse, and a window that says nothing meanwhile looks hung.

The loader's loops call :func:`report`; a caller that wants the news wraps the load in :func:`reporting`. Scoped to
the thread that loads (a worker thread in the app), so concurrent loads never mix their news. Qt-free."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Listener = Callable[[str, int, int], None]  # (stage, done, total)

_local = threading.local()


@contextmanager
def reporting(listener: Listener) -> Iterator[None]:
    """Within the block, this thread's loads tell ``listener`` each (stage, done, total) as they go."""
    previous = getattr(_local, "listener", None)
    _local.listener = listener
    try:
        yield
    finally:
        _local.listener = previous


@contextmanager
def naming(model: str) -> Iterator[None]:
    """Within the block, each stage is said as "<stage> of <model>" (a pair loads one model after the other)."""
    outer = getattr(_local, "listener", None)
    if outer is None:
        yield
        return
    with reporting(lambda stage, done, total: outer(f"{stage} of {model}", done, total)):
        yield


def report(stage: str, done: int, total: int) -> None:
    """One more unit of ``stage`` done (``done`` of ``total``); nothing when nobody listens."""
    listener = getattr(_local, "listener", None)
    if listener is not None:
        listener(stage, done, total)


@dataclass
class LoadNews:
    """How far a load has got: ``done`` of ``total`` units of ``stage`` (e.g. "dequantizing tensors", 45, 272)."""

    stage: str
    done: int
    total: int


class Loading:
    """``load()`` started at once on a thread of its own (a daemon: a process that leaves does not wait for it),
    its news kept until :meth:`follow` relays them: the app starts loading the demo models while its window is still
    being imported and built, and the window's load job follows this load instead of starting another."""

    def __init__(self, load: Callable[[], Any]):
        self._news: queue.SimpleQueue = queue.SimpleQueue()
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._work, args=(load,), name="load", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the load has ended (or ``timeout`` seconds): a process that leaves while a daemon thread runs
        inside torch can abort at exit ("terminate called without an active exception") instead of exiting."""
        self._thread.join(timeout)

    def _work(self, load: Callable[[], Any]) -> None:
        try:
            with reporting(lambda stage, done, total: self._news.put(LoadNews(stage, done, total))):
                self._outcome["value"] = load()
        except BaseException as exc:  # handed to the follower's thread
            self._outcome["error"] = exc
        finally:
            self._news.put(None)

    def follow(self, steps: int = 50, catch_up: bool = False) -> Generator[LoadNews, None, Any]:
        """Yield the load's news as it goes (about ``steps`` per stage at most; once: the news are consumed);
        the load's result is the generator's return value (``pair = yield from ...``), its exception raised here.
        ``catch_up``: the news that queued before following began are old: only the newest of them is relayed, and
        none when the load has ended by then (a load started while the window was built often has: the window then
        hears the result at once, not two hundred lines of progress first)."""
        shown: dict[str, int] = {}
        backlog = self._news.qsize() if catch_up else 0
        item = self._news.get()
        for _ in range(backlog - 1):
            if item is None:
                break
            item = self._news.get()
        while item is not None:
            step = max(1, item.total // steps)
            if item.done == item.total or item.done - shown.get(item.stage, -step) >= step:
                shown[item.stage] = item.done
                yield item
            item = self._news.get()
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


def load_with_news(load: Callable[[], T], steps: int = 50) -> Generator[LoadNews, None, T]:
    """Run ``load()`` on a thread of its own and yield its news as it goes (about ``steps`` per stage at most), for
    a job that yields records; ``load()``'s result is the generator's return value (``pair = yield from ...``), its
    exception raised here. A caller that stops iterating leaves the load to finish unseen (a daemon thread)."""
    return (yield from Loading(load).follow(steps))
