"""A seeded GUI monkey: thousands of random real key presses, clicks and wheel turns on the real widgets of the
window (tabs, Run / Cancel, the views' settings, shortcuts, the timeline, tree nodes, tokens, menus) across all
four views while their jobs run. It asserts what a user would notice: no exception, never a stuck window (Run comes
back after every job, whether it ended, failed or was cancelled), errors only as clean one-line messages, and a
bounded memory footprint. Reproducible: the same seed presses the same things in the same order."""

from __future__ import annotations

import faulthandler
import gc
import os
import random
import re
import sys
import time
from collections import Counter, deque

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, QPointF, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QTextCursor, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QCheckBox, QComboBox  # noqa: E402

from explorer.session import Session  # noqa: E402
from explorer.ui.window import MainWindow  # noqa: E402

SEED = int(os.environ.get("EXPLORER_MONKEY_SEED", "20261201"))
ACTIONS = int(os.environ.get("EXPLORER_MONKEY_ACTIONS", "2000"))
RSS_GROWTH_LIMIT_MB = 300
EVENTS_EVERY = 6  # actions between two passes of the event loop
JOB_PATIENCE_S = 25  # a job running longer than this is cancelled with the Cancel button

# Settings the monkey may change but that would make a job slow, by name in any view: capped after every action
# (small settings keep the jobs quick, so that many of them start, stream, end and get cancelled within the run).
CAPS = {
    "max_new": 8,
    "steps": 3,
    "length": 64,
    "layer": 7,
    "head": 3,
    "gamma": 4,
    "tree_depth": 3,
    "tree_topk": 3,
    "tree_budget": 12,
}
FIXED = {"backend": "torch"}  # the Triton interpreter takes seconds per tile on a CPU
BUG = re.compile(r"^[A-Z]\w*(Error|Exception)\b")  # worker.describe_error's form for a genuine bug


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Monkey:
    def __init__(self, qtbot, win: MainWindow, rng: random.Random):
        self.qtbot, self.win, self.rng = qtbot, win, rng
        self.log: deque[str] = deque(maxlen=40)
        self.done = Counter()
        self.spent: Counter = Counter()  # seconds per kind of action
        self.failures: list[str] = []
        self.jobs_started = self.jobs_ended = 0
        self.job_started_at: float | None = None
        win.worker.busy.connect(self._on_busy)
        win.worker.failed.connect(self.failures.append)
        self.views_done: set[str] = set()
        win.worker.finished.connect(lambda: win._job_view is not None and self.views_done.add(win._job_view.name))
        for view in win.views.values():
            if hasattr(view, "step_requested"):
                view.step_requested.connect(lambda *_: self.done.update(["token jumped"]))

    # ---- bookkeeping
    def _on_busy(self, busy: bool) -> None:
        if busy:
            self.jobs_started += 1
            self.job_started_at = time.monotonic()
        else:
            self.jobs_ended += 1
            self.job_started_at = None

    def where(self) -> str:
        return "\n  ".join(self.log)

    def check(self) -> None:
        win = self.win
        if not win.worker.running:
            assert win.run_button.isEnabled() and not win.cancel_button.isEnabled(), f"stuck after:\n  {self.where()}"
            assert win.run_action.isEnabled(), f"Run (Ctrl+R) disabled while idle after:\n  {self.where()}"
        elif self.job_started_at is not None and time.monotonic() - self.job_started_at > JOB_PATIENCE_S:
            self.log.append("job too slow: Cancel")
            t = time.perf_counter()
            self.press(Qt.Key.Key_Escape) if win.presenting else self.click(win.cancel_button)
            self.qtbot.waitUntil(lambda: not win.worker.running, timeout=30000)
            self.spent["waiting for slow jobs"] += time.perf_counter() - t

    def keep_small(self) -> None:
        for view in self.win.views.values():
            for key, widget in view.setting_widgets().items():
                if key in CAPS and widget.value() > CAPS[key]:
                    widget.setValue(CAPS[key])
                elif key in FIXED:
                    widget.setCurrentText(FIXED[key])

    # ---- real input
    def press(self, key, modifier=Qt.KeyboardModifier.NoModifier, widget=None) -> None:
        if QApplication.activeWindow() is not self.win:  # a closed menu or message box leaves no active window
            self.win.activateWindow()  # offscreen; a desktop gives the focus back to the main window itself
            self.qtbot.waitUntil(lambda: QApplication.activeWindow() is self.win, timeout=2000)
        target = widget or QApplication.focusWidget() or self.win
        self.qtbot.keyClick(target, key, modifier)

    def click(self, widget, pos: QPoint | None = None) -> None:
        self.qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos or widget.rect().center())

    def wheel(self, widget, up: bool) -> None:
        centre = QPointF(widget.rect().center())
        event = QWheelEvent(
            centre,
            QPointF(widget.mapToGlobal(widget.rect().center())),
            QPoint(0, 0),
            QPoint(0, 120 if up else -120),
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(widget, event)

    # ---- actions
    def act(self) -> None:
        win, rng = self.win, self.rng
        box = win.error_box
        if box is not None and box.isVisible():  # an error: read it, press OK, go on
            self.log.append(f"error box: {box.text()[:80]!r} -> OK")
            self.click(box.buttons()[0])
            self.done["error closed"] += 1
            return
        actions = [
            (6, self.tab),
            (6, self.run),
            (2, self.cancel),
            (14, self.player_key),
            (6, self.player_button),
            (5, self.timeline),
            (2, self.zoom_key),
            (1.5, self.presentation_key),
            (14, self.setting),
            (6, self.tree_node),
            (5, self.token),
            (5, self.view_click),
            (0.3, self.theme_menu),
            (0.3, self.bad_model),
        ]
        action = rng.choices([a for _, a in actions], weights=[w for w, _ in actions])[0]
        t = time.perf_counter()
        action()
        self.spent[action.__name__] += time.perf_counter() - t

    def tab(self) -> None:
        i = self.rng.randrange(self.win.tabs.count())
        self.log.append(f"tab {i}")
        self.click(self.win.tabs, self.win.tabs.tabRect(i).center())
        self.done["tab"] += 1

    def run(self) -> None:
        win = self.win
        if self.rng.random() < 0.5 or not win.dock.isVisible():
            self.log.append("Ctrl+R")
            self.press(Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        else:
            self.log.append("click Run")
            self.click(win.run_button)
        self.done["run"] += 1

    def cancel(self) -> None:
        win = self.win
        if win.presenting or self.rng.random() < 0.5 or not win.dock.isVisible():
            self.log.append("Esc")
            self.press(Qt.Key.Key_Escape)
        else:
            self.log.append("click Cancel")
            self.click(win.cancel_button)
        self.done["cancel"] += 1

    def player_key(self) -> None:
        key = self.rng.choice(
            [Qt.Key.Key_Left, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Home, Qt.Key.Key_End]
            + [Qt.Key.Key_Space]
        )
        self.log.append(f"key {key.name}")
        self.press(key, widget=self.win.tabs if self.rng.random() < 0.5 else None)
        self.done["player key"] += 1

    def player_button(self) -> None:
        p = self.win.player
        b = self.rng.choice([p.first_button, p.back_button, p.play_button, p.forward_button, p.last_button])
        self.log.append(f"player button {b.property('icon_kind')}")
        self.click(b)
        self.done["player button"] += 1

    def timeline(self) -> None:
        s = self.win.player.slider
        x = self.rng.randrange(2, max(3, s.width() - 2))
        y = s.height() // 2
        if self.rng.random() < 0.5:
            self.log.append(f"timeline click x={x}")
            self.click(s, QPoint(x, y))
        else:
            x2 = self.rng.randrange(2, max(3, s.width() - 2))
            self.log.append(f"timeline drag {x}->{x2}")
            self.qtbot.mousePress(s, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
            self.qtbot.mouseMove(s, QPoint((x + x2) // 2, y))
            self.qtbot.mouseMove(s, QPoint(x2, y))
            self.qtbot.mouseRelease(s, Qt.MouseButton.LeftButton, pos=QPoint(x2, y))
        self.done["timeline"] += 1

    def zoom_key(self) -> None:
        key = self.rng.choice([Qt.Key.Key_Equal, Qt.Key.Key_Plus, Qt.Key.Key_Minus, Qt.Key.Key_0])
        if self.win.font_scale > 1.6 and key in (Qt.Key.Key_Equal, Qt.Key.Key_Plus):
            key = Qt.Key.Key_Minus  # keep the text within what a screen shows
        self.log.append(f"Ctrl+{key.name}")
        self.press(key, Qt.KeyboardModifier.ControlModifier)
        self.done["zoom"] += 1

    def presentation_key(self) -> None:
        key = Qt.Key.Key_F11 if (not self.win.presenting or self.rng.random() < 0.5) else Qt.Key.Key_Escape
        was = self.win.presenting
        popup = QApplication.activePopupWidget()
        if popup is not None:  # an open drop-down takes every key (Qt's popups grab the keyboard): close it first,
            self.log.append("close popup")  # as a person would
            popup.close()
        self.log.append(f"key {key.name}")
        self.press(key)
        assert self.win.presenting != was or (key == Qt.Key.Key_Escape and not was), self.where()
        self.done["presentation"] += 1

    def setting(self) -> None:
        win, rng = self.win, self.rng
        if not win.dock.isVisible():
            return self.player_key()
        widgets = [w for w in win.active_view.setting_widgets().values() if w.isEnabled()]
        if not widgets:
            return self.tab()
        w = rng.choice(widgets)
        win.panel_scroll.ensureWidgetVisible(w)  # as a user scrolls the panel to it
        name = w.objectName() or type(w).__name__
        if isinstance(w, QCheckBox):
            self.log.append(f"toggle {w.text()}")
            self.click(w, QPoint(8, w.height() // 2))
        elif isinstance(w, QComboBox):
            w.setFocus(Qt.FocusReason.TabFocusReason)
            key = rng.choice([Qt.Key.Key_Down, Qt.Key.Key_Up])
            self.log.append(f"combo {w.currentText()} {key.name}")
            self.press(key, widget=w)
        elif isinstance(w, QAbstractSpinBox):
            how = rng.random()
            if how < 0.3:
                self.log.append(f"wheel over {name} (focus {w.hasFocus()})")
                before = w.value()
                focused = w.hasFocus()
                self.wheel(w, rng.random() < 0.5)
                if not focused:
                    assert w.value() == before, f"the wheel changed an unfocused control:\n  {self.where()}"
            elif how < 0.8:
                self.click(w, QPoint(w.width() // 3, w.height() // 2))
                key = rng.choice([Qt.Key.Key_Up, Qt.Key.Key_Down])
                self.log.append(f"spin {name} {key.name}")
                for _ in range(rng.randint(1, 3)):
                    self.press(key, widget=w)
            else:
                self.click(w, QPoint(w.width() // 3, w.height() // 2))
                text = str(rng.randint(0, 40))
                self.log.append(f"type {text} into {name}")
                self.press(Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier, widget=w)
                self.qtbot.keyClicks(w, text)
                self.press(Qt.Key.Key_Tab, widget=w)  # leaving the field commits it
        self.keep_small()
        self.done["setting"] += 1

    def tree_node(self) -> None:
        view = self.win.views["speculative"]
        if self.win.active_view is not view or not view.records:
            return self.tab()
        points = view.nodes.points()
        if not len(points):
            return self.view_click()
        point = self.rng.choice(list(points))
        scene = view.nodes.mapToScene(point.pos())
        pos = view.tree_plot.mapFromScene(scene)
        self.log.append(f"tree node {point.data()} at {pos.x()},{pos.y()}")
        selected = view.selected
        self.click(view.tree_plot.viewport(), pos)
        if view.selected != selected:
            self.done["node selected"] += 1
        self.done["tree node"] += 1

    def token(self) -> None:
        view = self.win.views["speculative"]
        if self.win.active_view is not view or not view.records:
            return self.tab()
        doc = view.text.document()
        anchors = []
        block = doc.begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fragment = it.fragment()
                if fragment.isValid() and fragment.charFormat().isAnchor():
                    anchors.append(fragment.position())
                it += 1
            block = block.next()
        if not anchors:
            return self.view_click()
        cursor = QTextCursor(doc)
        cursor.setPosition(self.rng.choice(anchors) + 1)
        view.text.setTextCursor(cursor)
        view.text.ensureCursorVisible()
        rect = view.text.cursorRect(cursor)
        pos = QPoint(max(0, rect.x() - 2), rect.center().y())
        self.log.append(f"token at {pos.x()},{pos.y()}")
        self.click(view.text.viewport(), pos)
        self.done["token"] += 1

    def view_click(self) -> None:
        view = self.win.active_view
        pos = QPoint(self.rng.randrange(max(1, view.width())), self.rng.randrange(max(1, view.height())))
        target = view.childAt(pos) or view
        local = target.mapFrom(view, pos)
        self.log.append(f"click {type(target).__name__} in {view.name} at {local.x()},{local.y()}")
        self.click(target, local)
        self.done["view click"] += 1

    def theme_menu(self) -> None:
        win = self.win
        if not win.menuBar().isVisible():
            return self.presentation_key()
        bar = win.menuBar()
        view_menu = next(a.menu() for a in bar.actions() if a.text() == "&View")
        self.click(bar, bar.actionGeometry(view_menu.menuAction()).center())
        self.qtbot.waitUntil(view_menu.isVisible, timeout=2000)
        themes = [a for a in view_menu.actions() if a.text().endswith("theme")]
        choice = self.rng.choice(themes)
        self.log.append(f"menu View > {choice.text()}")
        self.click(view_menu, view_menu.actionGeometry(choice).center())
        self.qtbot.waitUntil(lambda: not view_menu.isVisible(), timeout=2000)
        assert win.theme.name == choice.text().split()[0].lower(), self.where()
        self.done["theme"] += 1

    def bad_model(self) -> None:
        win = self.win
        if not win.dock.isVisible() or win.worker.running:
            return self.tab()
        loaded = win.target_edit.text()
        self.log.append("type a bad target path, Load")
        win.target_edit.setFocus()
        win.target_edit.selectAll()
        self.qtbot.keyClicks(win.target_edit, "/no/such/model")
        self.click(win.load_button)
        self.qtbot.waitUntil(lambda: not win.worker.running, timeout=20000)
        assert win.target_edit.text() == loaded, f"the failed load left the bad path:\n  {self.where()}"
        self.done["bad model"] += 1


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # what views save (prompt-set runs) goes here
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(Session(), settings=settings)
    win.resize(1280, 720)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    yield win
    win.worker.cancel_and_wait()
    win.set_presentation(False)
    win.zoom(None)
    win.set_theme("light")
    win.close()
    win.deleteLater()
    qtbot.wait(10)


def test_gui_monkey(qtbot, window, tmp_path):
    win = window
    rng = random.Random(SEED)
    monkey = Monkey(qtbot, win, rng)
    monkey.keep_small()  # small settings so that jobs are quick
    prompts = tmp_path / "prompts.txt"  # and a prompt set of two prompts
    prompts.write_text("def add(a, b):\nclass Stack:\n", encoding="utf-8")
    for view in win.views.values():
        if hasattr(view, "prompts_edit"):
            view.prompts_edit.setText(str(prompts))
    win.views["attention"].apply_settings({"layer": 3, "head": 1, "length": 48, "block_m": 16, "block_n": 16})
    with qtbot.waitSignal(win.worker.finished, timeout=60000):
        win.load_models()
    t0 = time.monotonic()
    rss_start, rss_at = None, -1
    with qtbot.capture_exceptions() as exceptions:
        for i in range(ACTIONS):
            monkey.act()
            if i % EVENTS_EVERY == 0:  # input is delivered at once; paints and records wait as in a busy frame
                t = time.perf_counter()
                QApplication.processEvents()
                monkey.spent["events and paints"] += time.perf_counter() - t
            assert not exceptions, f"exception at action {i}: {exceptions[0][1]!r} after:\n  {monkey.where()}"
            monkey.check()
            if rss_start is None and len(monkey.views_done) == len(win.views):
                gc.collect()  # every view has run by now: from here on, memory must not keep growing
                rss_start, rss_at = rss_mb(), i
        qtbot.waitUntil(lambda: not win.worker.running, timeout=60000)
        QApplication.processEvents()
        if win.error_box is not None and win.error_box.isVisible():
            win.error_box.close()
        monkey.check()
        # Every view runs at least once, whatever the random actions met (on a fast machine a slow view's jobs may
        # all have been cancelled by the next action); memory growth is then measured from here.
        names = list(win.views)
        for name in names:
            if name in monkey.views_done:
                continue
            monkey.click(win.tabs, win.tabs.tabRect(names.index(name)).center())
            monkey.click(win.run_button)
            qtbot.waitUntil(lambda: not win.worker.running, timeout=120000)
            QApplication.processEvents()
        if rss_start is None:
            gc.collect()
            rss_start, rss_at = rss_mb(), ACTIONS
        # Not stuck: one last Run goes from start to end, on the speculative view with a draft chain, so that its
        # tree nodes and tokens are clicked at least once whatever the random actions met (on a fast machine the
        # random ones may always find the view empty or between jobs).
        win.set_presentation(False)
        monkey.click(win.tabs, win.tabs.tabRect(list(win.views).index("speculative")).center())
        chain = {"method": "chain", "accept": "greedy", "max_new": 12, "temperature": 0.0}
        win.views["speculative"].apply_settings(chain)
        started = monkey.jobs_started
        monkey.click(win.run_button)
        assert monkey.jobs_started == started + 1, f"Run started nothing: {win.progress_label.text()!r}"
        try:
            qtbot.waitUntil(lambda: not win.worker.running, timeout=60000)
        except Exception:
            faulthandler.dump_traceback(sys.stdout, all_threads=True)  # where the job is
            raise AssertionError(f"{win.active_view.name} never ended: {win.active_view.settings_values()}") from None
        assert win.progress_label.text().startswith(f"{win.active_view.name}: done"), win.progress_label.text()
        assert win.run_button.isEnabled()
        win.player.go(0)  # the first step drafted a chain
        QApplication.processEvents()
        monkey.tree_node()
        monkey.token()
        QApplication.processEvents()
        assert not exceptions, exceptions
    gc.collect()
    growth = rss_mb() - rss_start if rss_start is not None else 0.0
    elapsed = time.monotonic() - t0
    print(
        f"monkey: {ACTIONS} actions in {elapsed:.0f} s, {monkey.jobs_started} jobs, "
        f"RSS +{growth:.0f} MB after action {rss_at} (all views had run); "
        + ", ".join(f"{k} {v}" for k, v in sorted(monkey.done.items()))
    )
    print("seconds per kind of action:", {k: round(v, 1) for k, v in monkey.spent.most_common()})
    assert rss_start is not None, f"not every view ran: {monkey.views_done}"
    bugs = [m for m in monkey.failures if BUG.match(m)]
    assert not bugs, f"jobs failed with a bug, not a clean message: {bugs}"
    assert monkey.jobs_started >= 20 and monkey.jobs_ended == monkey.jobs_started
    assert monkey.done["tree node"] > 0 and monkey.done["token"] > 0 and monkey.done["setting"] > 100
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.0f} MB over the run"
