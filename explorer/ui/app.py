"""Start the GUI, or render a view headless to an image of an exact size."""

from __future__ import annotations

import math
from pathlib import Path

from ..atomic import check_output
from ..errors import ExplorerError
from ..session import Session
from .qapp import ensure_app, exec_until_signal

__all__ = ["ensure_app", "make_session", "render_view", "run_gui", "screenshot"]


def make_session(
    model: str | None, draft: str | None, prompt: str | None, device: str | None, dtype: str | None
) -> Session:
    s = Session()
    if model:
        s.target_dir = Path(model).expanduser()
        s.draft_dir = None  # a user's own target gets the demo draft only if they ask for it
    if draft:
        s.draft_dir = Path(draft).expanduser()
    if prompt is not None:
        s.prompt = prompt
    if device:
        s.device = device
    s.dtype = dtype
    return s


def start_loading(session: Session):
    """Start loading ``session``'s models now, on a thread of their own: (the session it loads, the Loading), for
    the window's load to follow (explorer.ui.window.models) instead of starting another once it is built."""
    from dataclasses import replace

    from ..models.progress import Loading
    from .worker import reserve_gui_core

    reserve_gui_core()  # the torch threads the window's worker has (one core left to the GUI thread)
    wanted = replace(session, target=None, draft=None)
    return wanted, Loading(wanted.load_pair)


def run_gui(session: Session, theme: str = "light", launch=None) -> int:
    """The app's window (replacing ``launch``, the first window shown while the imports ran) and its event loop."""
    from ..interrupt import deferred

    app = ensure_app()
    started = win = None
    try:
        # A signal while importing or building only sets a flag (see explorer.cli.gui); the event loop's own
        # handlers take over inside the block, so that none falls between (raised there, after the load job had
        # started its thread, it left a running QThread to be destroyed at exit: Qt aborts the process).
        with deferred():
            started = start_loading(session)  # the models load (mostly outside the GIL) while the window is built
            from .window import MainWindow

            win = MainWindow(session, theme=theme)
            win.show_on_screen()  # at most the screen's free area, at the size last left on this screen
            if launch is not None:
                launch.close()
                launch.deleteLater()
            win.load_models(then_run=True, started=started)  # the demo pair (or --model/--draft) loads and runs
            return exec_until_signal(app, win.close)
    finally:  # leave once the window's job and the load are out of torch and Qt (a thread still running at exit
        if win is not None:  # aborts the process: Qt's "QThread: Destroyed while thread is still running")
            win.worker.finish(60000)
        if started is not None:  # a daemon thread inside torch at exit aborts it too (see Loading.wait)
            started[1].wait(60)


def render_view(
    session: Session,
    view: str,
    size: tuple[int, int],
    step: int | None = None,
    theme: str = "light",
    settings: dict | None = None,
    strict: bool = False,
):
    """Run ``view`` synchronously on the session's models and return the window rendered at exactly ``size``.

    ``settings`` are clamped to the controls' ranges, or with ``strict`` refused when out of range (the CLI)."""
    from PySide6.QtCore import QSettings

    from .views import VIEWS
    from .window import MainWindow

    if view not in VIEWS:
        raise ExplorerError(f"unknown view {view!r}; available: {', '.join(VIEWS)}")
    app = ensure_app(offscreen=True)
    if session.target is None:
        session.load()
    win = MainWindow(
        session,
        theme=theme,
        settings=QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "explorer", "screenshot"),
    )
    win.select_view(view)
    v = win.views[view]
    problems = [v.check_setting(k, value) for k, value in (settings or {}).items()] if strict else []
    if any(problems):
        win.close()
        win.deleteLater()
        raise ExplorerError(next(p for p in problems if p))
    v.apply_settings(settings or {})
    win.run_view_blocking()
    n = len(v.records)
    if step is not None and strict and not 0 <= step < n:
        win.close()
        win.deleteLater()
        last = f"1..{n}" if n else "none"  # ``step`` is the 0-based index; the command line counts from 1
        raise ExplorerError(f"--step {step + 1} is outside the {view} view's steps ({n} computed: {last})")
    if step is not None:
        win.player.go(step)
    win.resize(*size)
    win.show()
    app.processEvents()
    return win


LAYOUT_HEIGHT = 720  # smaller pictures are laid out on a canvas this high and scaled down, as recordings are


def layout_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size a screenshot is laid out at: ``size`` itself from 720 lines up, else scaled up to 720 lines."""
    w, h = size
    f = max(1.0, LAYOUT_HEIGHT / h)
    return math.ceil(w * f), math.ceil(h * f)


def screenshot(
    session: Session,
    view: str,
    out: str | Path,
    size: tuple[int, int],
    step: int | None = None,
    theme: str = "light",
    settings: dict | None = None,
    strict: bool = True,
) -> Path:
    """Render ``view`` and save it as a PNG of exactly ``size``. Small sizes are laid out larger (the window
    needs room for its panels) and scaled down smoothly; the file is written under a temporary name and renamed."""
    out = check_output(out, (".png",), "--out")  # before any work
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    canvas = layout_size(size)
    win = render_view(session, view, canvas, step, theme, settings, strict)
    try:
        image = _grab(win)
        if (image.width(), image.height()) != canvas:  # the window's minimum size is larger: lay out larger still
            f = max(image.width() / canvas[0], image.height() / canvas[1])
            canvas = (math.ceil(canvas[0] * f), math.ceil(canvas[1] * f))
            win.resize(*canvas)
            QApplication.processEvents()
            image = _grab(win)
    finally:
        win.close()
        win.deleteLater()
    if (image.width(), image.height()) != canvas:
        raise ExplorerError(f"the window could not be laid out at {canvas[0]}x{canvas[1]} for a {size[0]}x{size[1]} "
                            f"screenshot (it rendered {image.width()}x{image.height()})")  # fmt: skip
    if canvas != size:
        image = image.scaled(size[0], size[1], Qt.AspectRatioMode.IgnoreAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)  # fmt: skip
    from .kit.png import save_png  # here: importing the kit loads pyqtgraph, which the window's start-up defers

    return save_png(image, out)


def _grab(win):
    from PySide6.QtWidgets import QApplication

    for _ in range(2):  # painting makes pyqtgraph measure tick labels and widen axes: let the layout follow first
        win.grab()
        QApplication.processEvents()
    return win.grab().toImage()
