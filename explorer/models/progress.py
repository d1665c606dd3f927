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


def load_with_news(load: Callable[[], T], steps: int = 50) -> Generator[LoadNews, None, T]:
    """Run ``load()`` on a thread of its own and yield its news as it goes (about ``steps`` per stage at most), for
    a job that yields records; ``load()``'s result is the generator's return value (``pair = yield from ...``), its
    exception raised here. A caller that stops iterating leaves the load to finish unseen (a daemon thread)."""
    news: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with reporting(lambda stage, done, total: news.put(LoadNews(stage, done, total))):
                outcome["value"] = load()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            news.put(None)

    threading.Thread(target=work, name="load", daemon=True).start()
    shown: dict[str, int] = {}
    while (item := news.get()) is not None:
        step = max(1, item.total // steps)
        if item.done == item.total or item.done - shown.get(item.stage, -step) >= step:
            shown[item.stage] = item.done
            yield item
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
