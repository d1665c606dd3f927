"""The main window: the view switcher over the views, the shared player, and the rooms it is built from (the model
panel, the status bar, menus and keys, runs, exports, recording, comfort), one module each.

All model work goes through one :class:`Worker`; records stream into the view that asked for them and the player
follows the newest step unless the user has scrubbed back. Views never reach into the window: they ask for the
player through their signals (steps_changed, step_requested), which the window connects here.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from ...errors import ExplorerError
from ...session import Session
from ..player import Player
from ..theme import THEMES, apply_theme
from ..views import VIEW_ENTRIES, VIEWS
from ..views.base import View
from ..worker import Worker, reserve_gui_core
from .comfort import Comfort
from .exports import Exports
from .lazy_views import LazyViews
from .menus import Menus
from .models import ModelLoading
from .panel import ModelPanel
from .placement import Placement
from .recording import Recording
from .runs import ViewRuns
from .status import StatusBar


class MainWindow(
    ModelPanel, ModelLoading, ViewRuns, StatusBar, Menus, Comfort, Exports, Recording, Placement, QMainWindow
):
    def __init__(self, session: Session | None = None, theme: str = "light", settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("explorer")
        self.setMinimumSize(640, 420)
        self.session = session or Session()
        self.settings = settings or QSettings("explorer", "explorer")
        self.theme = THEMES[theme]
        self.font_scale = 1.0
        self.presenting = False
        self.error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self._job_view: View | None = None
        self._pending_run = False
        self._loaded_fields: tuple[str, str, str, str] | None = None  # the model fields of the loaded pair
        self._loading_fields = self._loaded_fields
        self._stale_empty: set[View] = set()  # empty views still saying "load a model" after models loaded
        self._words: dict[str | None, str] = {}  # each view's latest progress word (None: the models'), see say
        self.recording = None  # the running GuiRecording
        self._fonted = False  # the text size applied to the views (views built later take it as they are built)
        self._loading_names: str | None = None  # the models loading, as the views are told (see _set_loading)
        self._models_told = False  # the views were told models are loaded (see _on_models_loaded)

        reserve_gui_core()
        self.worker = Worker(self)
        self.worker.record.connect(self._on_record)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.busy.connect(self._on_busy)
        self._build_views()
        self._build_panel()
        self.views[list(VIEWS)[0]]  # the first tab's view; the others when first shown
        self._build_status()
        self._build_menus()
        self._build_shortcuts()
        self._build_presentation_hint()
        apply_theme(QApplication.instance(), self.theme)
        self.player.set_color(self.theme.text)
        self._apply_font()
        self._fonted = True
        self._sync_panel_from_session()
        self._update_status()

    def _build_views(self) -> None:
        """The tabs over the stacked views and the player below them, which the views' signals drive. Only the
        first tab's view is built now; the others when first shown or asked for (see lazy_views)."""
        self.views = LazyViews(VIEW_ENTRIES, self._build_view)
        self.tabs = QTabBar(self)
        self.tabs.setExpanding(False)
        self.stack = QStackedWidget(self)
        for entry in VIEW_ENTRIES.values():  # the views' titles, no view imported (see views/__init__.py)
            self.tabs.addTab(entry.title)
            self.stack.addWidget(QWidget())  # replaced by the view when it is built
        self.tabs.currentChanged.connect(self._on_tab)
        self.player = Player(self)
        self.player.step_changed.connect(self._on_step)
        # Records can arrive faster than a view can paint them: while streaming, render the newest step at most
        # 20 times a second instead of once per record, so the GUI thread never falls behind.
        self._live_render = QTimer(self)
        self._live_render.setSingleShot(True)
        self._live_render.setInterval(50)
        self._live_render.timeout.connect(self._render_live)

        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.tabs)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.player)
        self.setCentralWidget(central)

    def _build_view(self, name: str) -> View:
        """Build the view ``name`` in its place among the tabs and bring it up to date with the window: the theme,
        the text size, the models loaded or loading (as the views built before it were told)."""
        view = VIEWS[name](self.theme)
        index = list(VIEWS).index(name)
        for stack, widget in ((self.stack, view), (self.settings_stack, view.settings_widget() or QWidget())):
            current, stand_in = stack.currentIndex(), stack.widget(index)
            stack.insertWidget(index, widget)
            stack.removeWidget(stand_in)
            stand_in.deleteLater()
            stack.setCurrentIndex(current)
        if self._fonted:
            view.apply_font(QApplication.font())
        for v in (view, *view.findChildren(View)):  # the views inside it too (the prompt set's replay)
            v.loading = self._loading_names
            if self._models_told:
                v.models_loaded = True
                v.models_ready(self.session)
        if view.loading or view.models_loaded:
            self._stale_empty.add(view)  # it said "load a model" when built: said again when shown
        # last: the window hears from the view once it is in place (active_view would build it again meanwhile)
        view.steps_changed.connect(lambda count, step, v=view: self._on_steps_changed(v, count, step))
        view.step_requested.connect(lambda step, v=view: self._on_step_requested(v, step))
        return view

    # ---- the views and the player
    @property
    def active_view(self) -> View:
        return self.views[list(VIEWS)[self.tabs.currentIndex()]]

    def select_view(self, name: str) -> None:
        self.tabs.setCurrentIndex(list(self.views).index(name))

    def _on_tab(self, index: int) -> None:
        self.views[list(VIEWS)[index]]  # built on its first showing
        self.stack.setCurrentIndex(index)
        self.settings_stack.setCurrentIndex(index)
        view = self.active_view
        self._refresh_if_stale(view)
        self._say_for_tab(view)
        self.player.pause()
        self.player.count = len(view.records)
        self.player.step = -1
        self.player.go(view.current if view.current >= 0 else len(view.records) - 1)

    def _on_step(self, step: int) -> None:
        self.active_view.show_step(step)

    def _on_steps_changed(self, view: View, count: int, step: int) -> None:
        """A view's records changed outside a run (a saved run's prompt replayed): the player takes the new count
        and goes to ``step`` when the view is shown; a hidden view just shows the step."""
        if view is not self.active_view:
            view.show_step(step)
            return
        self.player.set_count(count)
        self.player.go(step)
        if view.current != self.player.step:  # the player was already there: it did not announce the step
            view.show_step(self.player.step)

    def _on_step_requested(self, view: View, step: int) -> None:
        """A view asks for a step (a click on a token jumps to the step that produced it)."""
        if view is self.active_view:
            self.player.go(step)
        else:
            view.show_step(step)

    # ---- errors, run files, closing
    def _show_error(self, message: str) -> None:
        """A non-blocking dialog: the app keeps running."""
        self.last_error = message
        box = QMessageBox(QMessageBox.Icon.Warning, "explorer", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda *_: self._forget_error_box(box))  # closed boxes are deleted: drop the handle
        box.open()
        self.error_box = box

    def _forget_error_box(self, box: QMessageBox) -> None:
        if self.error_box is box:
            self.error_box = None

    def _run_file_dialog(self, what: str) -> None:
        """File › Open run… / Save run…: prompt-set run files; the promptset view reads and writes them."""
        view = self.views["promptset"]
        try:
            if what == "open" and view.open_run_dialog(self):
                if self._job_view is view:
                    self.worker.cancel()  # the set it was computing is no longer shown
                self.select_view("promptset")
            elif what == "save":
                view.save_run_dialog(self)
        except ExplorerError as exc:
            self._show_error(str(exc))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_panel()
        if self.presentation_hint.isVisible():
            self._place_presentation_hint()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.remember_size()
        self.stop_recording()
        self.worker.cancel_and_wait(5000)
        super().closeEvent(event)
