"""The app shell: window, worker, player, heartbeat, export, screenshot, and no leaked widgets."""

from __future__ import annotations

import gc
import json
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, QPointF, QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from explorer.session import Session  # noqa: E402
from explorer.ui.app import render_view  # noqa: E402
from explorer.ui.window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    before = {id(w) for w in QApplication.topLevelWidgets()}
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(Session(), settings=settings)
    win.resize(1280, 800)
    win.show()
    yield win
    win.worker.cancel_and_wait()
    win.close()
    win.deleteLater()
    qtbot.wait(10)
    QApplication.processEvents()
    leaked = [w for w in QApplication.topLevelWidgets() if id(w) not in before and w.isVisible()]
    assert not leaked, f"leaked widgets: {leaked}"


def run_and_wait(qtbot, win, tokens=12, timeout=60000):
    win.views["generate"].max_new.setValue(tokens)
    with qtbot.waitSignal(win.worker.finished, timeout=timeout):
        win.load_models()
    with qtbot.waitSignal(win.worker.finished, timeout=timeout):
        win.run_view()


def test_window_loads_model_in_worker_and_streams_records(qtbot, window):
    assert window.session.target is None
    run_and_wait(qtbot, window, tokens=10)
    assert window.session.target is not None and window.session.draft is not None
    view = window.views["generate"]
    assert 1 <= len(view.records) <= 10
    assert window.player.count == len(view.records)
    assert window.player.step == len(view.records) - 1  # followed the newest step live
    assert f"target {window.session.target.name}" in window.status_models.text()
    assert "cpu" in window.status_device.text() and "float32" in window.status_device.text()


def press(qtbot, win, key, modifier=Qt.KeyboardModifier.NoModifier):
    """A real key press on whatever has focus in the window (shortcuts are resolved as for a user's keyboard)."""
    if QApplication.activeWindow() is not win:
        win.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=2000)
    target = QApplication.focusWidget() or win
    qtbot.keyClick(target, key, modifier)


def test_player_steps_back_and_forward_and_shows_earlier_step_exactly(qtbot, window):
    run_and_wait(qtbot, window, tokens=8)
    view = window.views["generate"]
    n = len(view.records)
    header_last = view.header.text()
    press(qtbot, window, Qt.Key.Key_Left)
    assert window.player.step == n - 2 and not window.player.follow
    assert view.current == n - 2
    assert f"step {n - 1} of {n}" in view.header.text()
    text_before = view.text.toPlainText()
    press(qtbot, window, Qt.Key.Key_Right)
    assert view.header.text() == header_last and window.player.follow
    press(qtbot, window, Qt.Key.Key_Left)
    assert view.text.toPlainText() == text_before  # stepping back again gives the same picture
    press(qtbot, window, Qt.Key.Key_Home)
    assert view.current == 0
    press(qtbot, window, Qt.Key.Key_Space)
    assert window.player.playing
    qtbot.waitUntil(lambda: window.player.step == n - 1, timeout=20000)
    qtbot.waitUntil(lambda: not window.player.playing, timeout=5000)
    press(qtbot, window, Qt.Key.Key_Home)
    press(qtbot, window, Qt.Key.Key_End)
    assert view.current == n - 1 and window.player.follow


# The demo target decodes at 1.87 ms per token on this 2-core machine when it is quiet (README, bench_generate).
QUIET_MS_PER_TOKEN = 1.87


def machine_slowdown() -> float:
    """How much slower than quiet this machine runs right now (>= 1): shared CI machines are sometimes several
    times slower for minutes (the same test then measured 77 ms gaps on the code that measured 24-30 ms before)."""
    from explorer.models.checkpoint import default_model_dirs, load_model
    from explorer.models.generate import generate

    lm = load_model(default_model_dirs()["target"])
    ids = lm.encode("def f(x):\n")
    generate(lm, ids, 8)
    t0 = time.perf_counter()
    generate(lm, ids, 64, stop_at_eos=False)
    ms_per_token = (time.perf_counter() - t0) * 1000 / 64
    return max(1.0, ms_per_token / QUIET_MS_PER_TOKEN)


def test_gui_thread_never_blocked_over_50ms(qtbot, window, request):
    """Heartbeat: a 5 ms timer on the GUI thread keeps firing while the model decodes in the worker. The bound is
    50 ms on a quiet machine, scaled by how much slower the machine runs at the moment of the test."""
    slowdown = machine_slowdown()
    bound = 50 * slowdown
    qtbot.waitExposed(window)
    qtbot.wait(50)  # the window's first paint is not what this test is about
    gc.collect()  # nor is collecting what earlier tests left behind (a full collection then can take > 100 ms)
    gc.freeze()  # ...nor walking it again: later collections see only what this test allocates
    request.addfinalizer(gc.unfreeze)
    beats: list[float] = []
    timer = QTimer(window)
    timer.setInterval(5)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    window.views["generate"].max_new.setValue(300)
    timer.start()
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.run_view()
    timer.stop()
    gaps = np.diff(beats) * 1000
    print(
        f"heartbeat: {len(gaps)} gaps, max {gaps.max():.1f} ms, median {np.median(gaps):.1f} ms; machine "
        f"{slowdown:.1f}x slower than quiet, bound {bound:.0f} ms"
    )
    assert len(window.views["generate"].records) >= 100
    assert len(gaps) > 20
    assert gaps.max() < bound, (
        f"GUI blocked for {gaps.max():.1f} ms (median gap {np.median(gaps):.1f} ms; bound {bound:.0f} ms on a "
        f"machine {slowdown:.1f}x slower than quiet)"
    )


def test_bad_model_dir_shows_error_and_app_keeps_running(qtbot, window, tmp_path):
    window.target_edit.setText(str(tmp_path / "nope"))
    with qtbot.waitSignal(window.worker.failed, timeout=20000):
        window.load_models()
    assert "model directory not found" in window.last_error
    assert window.error_box is not None and window.error_box.isVisible()
    window.error_box.close()
    window.target_edit.setText(str(Session().target_dir))
    run_and_wait(qtbot, window, tokens=4)  # still works afterwards
    assert window.views["generate"].records


def test_export_png_json_csv(qtbot, window, tmp_path):
    run_and_wait(qtbot, window, tokens=6)
    png = window.export_png(tmp_path / "view.png")
    data = json.loads(window.export_data(tmp_path / "view.json").read_text())
    csv_text = window.export_data(tmp_path / "view.csv").read_text()
    assert png.stat().st_size > 5000
    assert data["view"] == "generate" and len(data["steps"]) == len(window.views["generate"].records)
    assert data["steps"][0]["top"][0]["prob"] > 0
    assert csv_text.splitlines()[0].startswith("step,token_id,token_text")


def test_theme_font_and_presentation_by_keys(qtbot, window):
    qtbot.waitExposed(window)
    size = QApplication.font().pointSizeF()
    press(qtbot, window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(size * 1.15)
    press(qtbot, window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    press(qtbot, window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(size / 1.15)
    press(qtbot, window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(size)
    window.set_theme("dark")
    assert window.views["generate"].theme.name == "dark"
    window.prompt_edit.setFocus()  # focus in the panel, which presentation mode hides
    press(qtbot, window, Qt.Key.Key_F11)
    assert window.presenting and not window.dock.isVisible() and not window.menuBar().isVisible()
    assert QApplication.font().pointSizeF() > size
    assert window.presentation_hint.isVisible() and "F11 or Esc" in window.presentation_hint.text()
    assert window.presentation_hint.geometry().intersects(window.stack.geometry().translated(0, 30))
    # Every shortcut still works with the menu bar and the panel hidden.
    presenting_size = QApplication.font().pointSizeF()
    press(qtbot, window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() > presenting_size
    press(qtbot, window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.font().pointSizeF() == pytest.approx(presenting_size)
    press(qtbot, window, Qt.Key.Key_F11)  # F11 leaves
    assert not window.presenting and window.dock.isVisible() and window.menuBar().isVisible()
    assert not window.presentation_hint.isVisible()
    assert QApplication.font().pointSizeF() == pytest.approx(size)
    press(qtbot, window, Qt.Key.Key_F11)
    assert window.presenting
    qtbot.waitUntil(lambda: not window.presentation_hint.isVisible(), timeout=window._hint_timer.interval() + 2000)
    press(qtbot, window, Qt.Key.Key_Escape)  # so does Esc
    assert not window.presenting and window.dock.isVisible() and window.statusBar().isVisible()
    window.set_theme("light")


def test_screenshot_is_exact_size_and_not_blank(qtbot, tmp_path):
    win = render_view(Session(), "generate", (1280, 720), settings={"max_new": 8})
    image = win.grab().toImage()
    win.close()
    win.deleteLater()
    assert (image.width(), image.height()) == (1280, 720)
    ptr = image.constBits()
    pixels = np.frombuffer(ptr, dtype=np.uint8, count=image.sizeInBytes())
    assert pixels.std() > 20  # not a blank image
    assert len(np.unique(pixels.reshape(-1, 4)[::97], axis=0)) > 20


def test_esc_cancels_a_run_and_says_so(qtbot, window):
    view = window.views["generate"]
    view.max_new.setValue(400)
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
    assert "press run" in view.header.text().lower() and "load a model" not in view.header.text().lower()
    window.run_view()
    qtbot.waitUntil(lambda: len(view.records) >= 3, timeout=30000)
    assert not window.run_button.isEnabled() and window.cancel_button.isEnabled()
    with qtbot.waitSignal(window.worker.finished, timeout=30000):
        press(qtbot, window, Qt.Key.Key_Escape)
    n = len(view.records)
    assert 3 <= n < 400
    assert window.progress_label.text() == f"generate: cancelled after {n} steps"
    assert window.run_button.isEnabled() and not window.cancel_button.isEnabled()
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        press(qtbot, window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)  # Run again: runs to the end
    assert window.progress_label.text() == f"generate: done, {len(view.records)} steps"


def test_failed_load_puts_back_the_loaded_models(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
    loaded = window.target_edit.text()
    status = window.status_models.text()
    window.target_edit.setText(str(tmp_path / "nope"))
    window.draft_edit.setText("")
    with qtbot.waitSignal(window.worker.failed, timeout=20000):
        window.load_models()
    window.error_box.close()
    assert "model directory not found" in window.last_error
    assert window.target_edit.text() == loaded and window.draft_edit.text()  # the fields name what is loaded
    assert window.status_models.text() == status
    assert window.session.target_dir == window.session.target.path
    assert window.progress_label.text().startswith("loading failed: model directory not found")
    assert not window._models_changed()  # Run runs on the loaded pair instead of retrying the bad path


def test_panel_scrolls_keeps_run_visible_and_wheel_needs_focus(qtbot, window):
    window.resize(1280, 720)
    window.select_view("attention")
    window.zoom(1.6)
    qtbot.waitExposed(window)
    QApplication.processEvents()
    bar = window.panel_scroll.verticalScrollBar()
    assert bar.maximum() > 0  # the settings do not fit: they scroll
    for button in (window.run_button, window.cancel_button):
        top_left = button.mapTo(window, QPoint(0, 0))
        assert button.isVisible() and top_left.y() + button.height() <= window.statusBar().y()
    spin = window.views["attention"].layer
    before, scroll_before = spin.value(), bar.value()
    assert not spin.hasFocus()
    centre = QPointF(spin.rect().center())
    wheel = QWheelEvent(
        centre,
        QPointF(spin.mapToGlobal(spin.rect().center())),
        QPoint(0, 0),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(spin, wheel)
    assert spin.value() == before  # the wheel over an unfocused spin box does not edit it...
    assert bar.value() > scroll_before  # ...it scrolls the panel
    spin.setFocus()
    wheel = QWheelEvent(
        centre,
        QPointF(spin.mapToGlobal(spin.rect().center())),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(spin, wheel)
    assert spin.value() == before + 1  # with focus it does
    window.zoom(None)


@pytest.mark.parametrize("size", [(1280, 720), (1366, 768), (1920, 1080), (3840, 2160)])
def test_window_lays_out_from_720p_to_2160p_at_text_scales(qtbot, window, size):
    window.resize(*size)
    qtbot.waitExposed(window)
    for scale in (0.8, 1.0, 1.5, 2.0):
        window.font_scale = scale
        window._apply_font()
        for name in ("attention", "speculative"):
            window.select_view(name)
            QApplication.processEvents()
            assert window.size().width() == size[0]
            panel = window.dock.geometry()
            assert window.stack.width() >= size[0] * 0.5, (scale, name, panel.width())
            for button in (window.run_button, window.cancel_button):
                corner = button.mapTo(window, QPoint(button.width(), button.height()))
                assert corner.x() <= panel.right() + 1 and corner.y() <= window.statusBar().y(), (scale, name)
            assert window.player.mapTo(window, QPoint(0, window.player.height())).y() <= window.statusBar().y()
    window.zoom(None)


def test_long_status_messages_elide_with_the_whole_text_on_hover(qtbot, window):
    qtbot.waitExposed(window)
    width = window.dock.width()
    long = "loading failed: " + "a very long message about a model directory " * 8
    window.progress_label.setText(long)
    QApplication.processEvents()
    assert window.dock.width() == width
    assert window.progress_label.text() == long and window.progress_label.toolTip() == long
    shown = super(type(window.progress_label), window.progress_label).text()
    assert shown.endswith("…") and len(shown) < len(long)
    assert window.progress_label.height() < 2.5 * window.progress_label.fontMetrics().height()  # one line


def test_views_drive_the_player_through_their_signals(window):
    """A view never reaches into the window: steps_changed (count, step) and step_requested (step) move the
    player when the view is the active one; a hidden view just shows the step."""
    shown: dict[str, int] = {}
    for name, view in window.views.items():

        def show(step, name=name, view=view):
            shown[name] = view.current = step

        view.show_step = show
    window.select_view("speculative")
    spec, amp = window.views["speculative"], window.views["amp"]
    spec.steps_changed.emit(5, 3)
    assert (window.player.count, window.player.step, shown["speculative"]) == (5, 3, 3)
    spec.step_requested.emit(1)
    assert window.player.step == 1 and shown["speculative"] == 1
    spec.current = -1  # records replaced, the player already at the step asked for: the view shows it anyway
    spec.steps_changed.emit(5, 1)
    assert window.player.step == 1 and spec.current == 1
    amp.steps_changed.emit(9, 4)
    amp.step_requested.emit(2)
    assert (window.player.count, window.player.step, shown["amp"]) == (5, 1, 2)


def test_record_dialog_gives_start_recording_its_arguments(window, tmp_path):
    from explorer.ui.window.record_dialog import RecordDialog

    dialog = RecordDialog(window, "speculative.mp4", has_current=True)
    dialog.path.setText(str(tmp_path / "v.gif"))
    dialog.size.setCurrentText("1920x1080")
    values = dialog.values()
    assert values["path"] == str(tmp_path / "v.gif") and values["size"] == (1920, 1080)
    assert values["fps"] == 30 and values["seconds_per_step"] == 1.0 and values["from_current"]
    dialog.size.setCurrentText("wide")
    dialog._accept()
    assert dialog.error.text() and dialog.result() == 0  # a bad size is said in the dialog, which stays open
    dialog.deleteLater()


def test_leaving_presentation_with_esc_gives_the_panel_its_width_back(qtbot, window):
    """Issue 23.12: after F11 and Esc the panel is as wide as before (not the presentation's wider fit)."""
    window.resize(1280, 720)
    qtbot.waitExposed(window)
    qtbot.wait(50)
    before = window.dock.width()
    for leave in (Qt.Key.Key_Escape, Qt.Key.Key_F11):
        press(qtbot, window, Qt.Key.Key_F11)
        assert window.presenting
        qtbot.wait(50)
        press(qtbot, window, leave)
        assert not window.presenting
        qtbot.wait(100)
        assert abs(window.dock.width() - before) <= 2, (leave, before, window.dock.width())


def test_amp_progress_bar_starts_empty_and_fills_with_the_steps(qtbot, window):
    """Issue 23.12: a run whose length is known fills its bar step by step, never the full-looking busy stripes."""
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
    window.select_view("amp")
    steps = window.views["amp"].steps.value()
    seen: list[tuple[int, int]] = []
    window.progress.valueChanged.connect(lambda v: seen.append((v, window.progress.maximum())))
    with qtbot.waitSignal(window.worker.finished, timeout=120000):
        qtbot.mouseClick(window.run_button, Qt.MouseButton.LeftButton)
        assert window.progress.maximum() == steps and window.progress.value() == 0  # empty at the start
    values = [v for v, top in seen if top == steps]
    assert values[0] == 0 and values[-1] == steps and values == sorted(values)


def click_tab(qtbot, win, name):
    qtbot.mouseClick(win.tabs, Qt.MouseButton.LeftButton, pos=win.tabs.tabRect(list(win.views).index(name)).center())
    assert win.active_view is win.views[name]


def test_empty_views_say_what_is_true_while_and_after_models_load(qtbot, window):
    """Issue 23.11: "Loading …" while the models load (not "Load a model"), "Press Run" once loaded, on every tab
    (the prompt set's replay panels included)."""
    qtbot.waitExposed(window)
    header = window.views["generate"].header
    assert "load a model" in header.text().lower()
    # the panel names the demo pair: the status bar says they are not loaded yet, and that Run loads them
    assert window.status_models.text() == "no model loaded yet: Run loads demo-target + demo-draft"
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        qtbot.mouseClick(window.load_button, Qt.MouseButton.LeftButton)
        assert "Loading demo-target + demo-draft…" in header.text() and "press run" not in header.text().lower()
        click_tab(qtbot, window, "speculative")
        assert "Loading demo-target" in window.views["speculative"].header.text()
    assert "Press Run to speculate" in window.views["speculative"].header.text()
    click_tab(qtbot, window, "generate")
    assert "Press Run to decode" in header.text()
    click_tab(qtbot, window, "promptset")
    replay = window.views["promptset"].replay
    assert "load a model" not in replay.header.text().lower()


def test_progress_line_says_the_shown_tabs_news_not_anothers(qtbot, window):
    """Issue 23.11: after a generate run, the attention tab does not say "generate: done"; back on generate it does."""
    run_and_wait(qtbot, window, tokens=6)
    done = f"generate: done, {len(window.views['generate'].records)} steps"
    assert window.progress_label.text() == done
    click_tab(qtbot, window, "attention")
    assert "generate" not in window.progress_label.text() and window.progress_label.text() == "models loaded"
    click_tab(qtbot, window, "generate")
    assert window.progress_label.text() == done


def test_vertical_tick_labels_never_overlap_in_a_short_plot(qtbot):
    """The kit's axis: a 0..1 plot 40 px high shows fewer labels (auto and explicit ticks alike), not a blot."""
    from PySide6.QtGui import QFontMetrics

    from explorer.ui.kit import static_plot

    plot = static_plot(None, "short")
    qtbot.addWidget(plot)
    plot.plot([0, 1, 2], [0.0, 0.5, 1.0])
    plot.setYRange(0, 1, padding=0)
    plot.resize(300, 90)
    plot.show()
    qtbot.waitExposed(plot)
    axis = plot.getAxis("left")
    line = QFontMetrics(axis.style["tickFont"] or axis.font()).height()
    size = axis.size().height()
    spacing = axis.tickSpacing(0.0, 1.0, size)[0][0]
    assert (1.0 / spacing + 1) * line <= size  # the auto ticks fit one under another
    assert not plot.getPlotItem().getAxis("right").isVisible()
    axis.setTicks([[(v, f"{v:g}") for v in (0, 0.25, 0.5, 0.75, 1)]])
    axis.picture = None
    specs = axis.generateDrawSpecs(__import__("PySide6.QtGui", fromlist=["QPainter"]).QPainter())
    ys = sorted(rect.center().y() for rect, _flags, _text in specs[2])
    assert len(ys) < 5 and all(b - a >= line - 1 for a, b in zip(ys, ys[1:], strict=False))
    assert len(axis._tickLevels[0]) == 5  # the ticks set stay as set


def test_a_load_says_how_far_it_has_got(qtbot, window):
    """Issue 23 item 18: a load shows its progress in the window (a GGUF file of a real model takes seconds):
    the progress line names the stage and counts, the bar follows, and the models arrive as before."""
    said: list[str] = []
    bars: list[tuple[int, int]] = []
    say = window.say

    def recording_say(text, view=None):
        said.append(text)
        bars.append((window.progress.value(), window.progress.maximum()))
        say(text, view)

    window.say = recording_say
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        qtbot.mouseClick(window.load_button, Qt.MouseButton.LeftButton)
    news = [s for s in said if s.startswith("loading ") and s.endswith(" of demo-target")]
    assert any("reading model.safetensors" in s for s in news), said
    assert any("checking weights" in s for s in news) and any("fusing layers" in s for s in news), said
    assert any(s.endswith(": fusing layers of demo-draft") for s in said), said
    n = window.session.target.config.num_layers
    assert f"loading {n}/{n}: fusing layers of demo-target" in news
    assert window.session.target is not None and window.session.draft is not None


def test_load_with_news_relays_stages_and_the_result_and_errors():
    from explorer.models.progress import LoadNews, load_with_news, report

    def load():
        for i in range(1000):
            report("counting", i + 1, 1000)
        return "done"

    gen = load_with_news(load, steps=10)
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert result == "done" and 2 <= len(items) <= 11 and items[-1] == LoadNews("counting", 1000, 1000)

    def broken():
        raise ValueError("corrupt")

    with pytest.raises(ValueError, match="corrupt"):
        list(load_with_news(broken))
