"""Start the GUI, or render a view headless to an image of an exact size."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExplorerError
from ..session import Session
from .qapp import ensure_app

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


def run_gui(session: Session, theme: str = "light") -> int:
    app = ensure_app()
    from .main_window import MainWindow

    win = MainWindow(session, theme=theme)
    win.resize(1440, 900)
    win.show()
    win.load_models(then_run=True)  # the demo pair (or --model/--draft) loads and runs at once
    return app.exec()


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

    from .main_window import MainWindow
    from .views import VIEWS

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
    if step is not None:
        win.player.go(step)
    win.resize(*size)
    win.show()
    app.processEvents()
    return win


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
    win = render_view(session, view, size, step, theme, settings, strict)
    from PySide6.QtWidgets import QApplication

    for _ in range(2):  # painting makes pyqtgraph measure tick labels and widen axes: let the layout follow first
        win.grab()
        QApplication.processEvents()
    image = win.grab().toImage()
    win.close()
    win.deleteLater()
    if (image.width(), image.height()) != size:
        raise ExplorerError(f"rendered {image.width()}x{image.height()}, not {size[0]}x{size[1]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise ExplorerError(f"could not write {out}")
    return out
