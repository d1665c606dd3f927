"""Prompt-set runs in the window: ``explorer open RUN.jsonl`` and ``explorer screenshot --run RUN.jsonl`` (no model
is loaded: the run file holds every step the view replays)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExplorerError
from ..session import Session
from ..speculative.runs import Run
from .qapp import ensure_app


def window_with_run(run: Run, theme: str = "light", offscreen: bool = False, settings=None):
    """A main window on the prompt-set view showing ``run``; its models are those the run used (loaded only when
    the user presses Run)."""
    app = ensure_app(offscreen=offscreen)
    from .window import MainWindow

    session = Session()
    target, draft = run.header.get("target") or {}, run.header.get("draft") or {}
    if target.get("path") and Path(target["path"]).is_dir():
        session.target_dir = Path(target["path"])
        session.draft_dir = Path(draft["path"]) if draft.get("path") and Path(draft["path"]).is_dir() else None
    win = MainWindow(session, theme=theme, settings=settings)
    win.select_view("promptset")
    view = win.views["promptset"]
    view.set_run(run)
    if run.header.get("prompts_file"):
        view.prompts_edit.setText(str(run.header["prompts_file"]))
    win.show_replaying(run.path.name if run.path is not None else "a stored run")
    app.processEvents()
    return win


def open_run_window(run: Run, theme: str = "light") -> int:
    app = ensure_app()
    win = window_with_run(run, theme)
    win.show_on_screen()  # at most the screen's free area, as the app's window
    return app.exec()


def screenshot_run(run: Run, out: str | Path, size: tuple[int, int], theme: str = "light",
                   prompt: str | None = None, step: int | None = None, config: int = 0) -> Path:  # fmt: skip
    """The window on ``run`` rendered offscreen at exactly ``size`` (replaying ``prompt``, default the first row)."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from .kit.png import save_png

    settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "explorer", "screenshot")
    win = window_with_run(run, theme, offscreen=True, settings=settings)
    view = win.views["promptset"]
    win.resize(*size)
    win.show()
    QApplication.processEvents()
    view.config_combo.setCurrentIndex(config)
    if prompt is not None:
        if prompt not in view.model.row_of:
            win.close()
            raise ExplorerError(f"the run has no prompt {prompt!r}")
        view.select_prompt(prompt)
    if step is not None and view.records:
        win.player.go(min(step, len(view.records) - 1))
    for _ in range(2):  # let pyqtgraph widen its axes after the first paint
        win.grab()
        QApplication.processEvents()
    image = win.grab().toImage()
    win.close()
    win.deleteLater()
    if (image.width(), image.height()) != size:
        raise ExplorerError(f"rendered {image.width()}x{image.height()}, not {size[0]}x{size[1]}")
    return save_png(image, out)
