"""View `promptset`: a run file opened in the window — table, sorting and filtering by real clicks and keys, a row
replays its stored steps in the speculative panels, rows stream in while a run computes, a big run opens fast."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("PySide6")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from explorer.models.checkpoint import default_model_dirs, load_model  # noqa: E402
from explorer.session import Session  # noqa: E402
from explorer.speculative.options import SPECULATE  # noqa: E402
from explorer.speculative.promptsets import Prompt  # noqa: E402
from explorer.speculative.runs import (  # noqa: E402
    Configuration,
    RunWriter,
    make_header,
    parse_compare,
    read_run,
    run_prompt_set,
)
from explorer.ui.promptset_app import window_with_run  # noqa: E402

PROMPTS = [
    Prompt("p1", "def add(a, b):\n    ", "function"),
    Prompt("p2", "for i in range(10):\n    ", "loop"),
    Prompt("p3", "import os\n\n\ndef main():\n    ", "function"),
]


def qsettings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "explorer", "test-promptset")


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dirs = default_model_dirs()
    target, draft = load_model(dirs["target"]), load_model(dirs["draft"])
    base = SPECULATE.defaults() | {"method": "chain", "accept": "greedy", "max_new": 8}
    configs = [Configuration("base", base), parse_compare("gamma=2", base)]
    path = tmp_path_factory.mktemp("runs") / "run.jsonl"
    with RunWriter(path, make_header(PROMPTS, configs, target, draft, 0)) as w:
        live = list(run_prompt_set(target, draft, PROMPTS, configs, w))
    torch.set_num_threads(threads)
    return path, live


def open_window(qtbot, path):
    win = window_with_run(read_run(path), offscreen=True, settings=qsettings())
    qtbot.addWidget(win)
    win.resize(1600, 900)
    win.show()
    qtbot.waitExposed(win)
    return win, win.views["promptset"]


def press(qtbot, win, key) -> None:
    """A real key press on whatever has focus (after a click, the table)."""
    if QApplication.activeWindow() is not win:
        win.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=2000)
    qtbot.keyClick(QApplication.focusWidget() or win, key)


def click_row(view, row: int) -> None:
    rect = view.table.visualRect(view.proxy.index(row, 0))
    QTest.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_table_sorts_filters_and_replays_the_stored_steps(qtbot, run_file, tmp_path):
    path, live = run_file
    win, view = open_window(qtbot, path)
    headers = [view.model.headerData(i, Qt.Orientation.Horizontal) for i in range(view.model.columnCount())]
    assert headers[:2] == ["prompt", "category"] and "α gamma=2" in headers and "Δ tok/step gamma=2" in headers
    assert view.proxy.rowCount() == 3

    click_row(view, 1)  # the second prompt, under the base configuration
    assert view.replayed.prompt == "p2" and view.replayed.config == 0
    stored = next(r for r in live if r.prompt == "p2" and r.config == 0)
    assert [s.as_dict() for s in view.records] == [s.as_dict() for s in stored.steps]  # replayed = live
    assert [s.as_dict() for s in view.replay.records] == [s.as_dict() for s in stored.steps]
    shown = max(s.step for s in stored.steps if len(s.tree.tokens))  # the last step that drafted something
    assert win.player.count == len(stored.steps) and view.replay.current == shown
    press(qtbot, win, Qt.Key.Key_Home)  # the table has focus: the timeline keys still step the replay
    assert view.current == 0 and view.replay.current == 0 and "step 1 of" in view.replay.header.text()
    press(qtbot, win, Qt.Key.Key_Right)
    assert view.replay.current == 1 and view.replayed.prompt == "p2"
    press(qtbot, win, Qt.Key.Key_Down)  # Up / Down choose the prompt
    assert view.replayed.prompt == "p3"

    # Sorting by a value column (a real click on its header), both ways.
    column = headers.index("tok/step base")
    header = view.table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    values = lambda: [view.proxy.index(r, column).data(Qt.ItemDataRole.UserRole) for r in range(3)]  # noqa: E731
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=header.viewport().rect().center().__class__(
        x, header.height() // 2))  # fmt: skip
    first = values()
    assert first in (sorted(first), sorted(first, reverse=True))
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=header.viewport().rect().center().__class__(
        x, header.height() // 2))  # fmt: skip
    assert values() == list(reversed(first)) or len(set(first)) < 3

    # Filtering by typing, and by category.
    QTest.keyClicks(view.filter_edit, "range")
    assert view.proxy.rowCount() == 1 and view.proxy.index(0, 0).data() == "p2"
    view.filter_edit.clear()
    view.category_combo.setCurrentIndex(view.category_combo.findData("function"))
    assert view.proxy.rowCount() == 2

    # The other configuration replays its own steps; the plots and the summary name both.
    view.config_combo.setCurrentIndex(1)
    assert view.replayed.config == 1
    assert "gamma=2" in view.summary.text() and "most rejected" in view.summary.text()

    # Recording the view records the replayed prompt in the speculative panels.
    copy = view.clone()
    assert copy.name == "speculative" and [s.as_dict() for s in copy.records] == [s.as_dict() for s in view.records]
    copy.deleteLater()

    # Save run writes a copy that reads back the same.
    saved = view.save_run(tmp_path / "copy.jsonl")
    assert [r.summary() for r in read_run(saved).results] == [r.summary() for r in read_run(path).results]
    data = view.export_data()
    assert data["view"] == "promptset" and len(data["configurations"]) == 2


def test_rows_stream_in_while_a_run_computes(qtbot, tmp_path):
    QStandardPaths.setTestModeEnabled(True)  # the app's runs folder goes to a test location
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p.text, "id": p.id, "category": p.category}) + "\n"
                               for p in PROMPTS[:2]))  # fmt: skip
    from explorer.ui.window import MainWindow

    win = MainWindow(Session(), settings=qsettings())
    qtbot.addWidget(win)
    win.show()
    win.select_view("promptset")
    view = win.views["promptset"]
    view.prompts_edit.setText(str(prompts))
    view.compare_edit.setText("gamma=2")
    view.apply_settings({"max_new": 6})
    inserted = []
    view.model.rowsInserted.connect(lambda *_: inserted.append(win.worker.running))
    with qtbot.waitSignal(win.worker.finished, timeout=60_000):
        win.load_models()
    beats: list[float] = []  # a heartbeat on the GUI thread while the set computes
    timer = QTimer(win)
    timer.setInterval(5)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    threads = torch.get_num_threads()
    try:
        timer.start()
        win.run_view()
        qtbot.waitUntil(lambda: view.run is not None and len(view.run.results) == 4 and not win.worker.running,
                        timeout=180_000)  # fmt: skip
        timer.stop()
    finally:
        torch.set_num_threads(threads)
    gaps = np.diff(beats) * 1000
    print(f"heartbeat: {len(gaps)} gaps, max {gaps.max():.1f} ms, median {np.median(gaps):.1f} ms")
    # Live: the GUI thread kept running all along. (The max gap is ~100 ms on an idle machine; on a 2-core machine
    # shared by ten busy processes the OS alone makes gaps of ~0.5-1 s, for every view alike.)
    assert len(gaps) > 20 and np.median(gaps) < 50 and gaps.max() < 2500, f"GUI blocked for {gaps.max():.0f} ms"
    assert win.last_error is None
    assert view.proxy.rowCount() == 2 and inserted and inserted[0]  # the first row arrived mid-run
    assert view.replayed is not None and view.records  # the first prompt is replayed as soon as it is done
    on_disk = read_run(view.run.path)
    assert [(r.prompt, r.config) for r in on_disk.results] == [("p1", 0), ("p1", 1), ("p2", 0), ("p2", 1)]
    win.close()


def test_a_thousand_prompt_run_opens_fast(qtbot, run_file, tmp_path):
    """A synthetic 1,000-prompt run (the real records repeated under new ids) shows its table quickly."""
    path, _ = run_file
    lines = path.read_bytes().split(b"\n")
    header = json.loads(lines[0])
    body = [json.loads(x) for x in lines[1:] if x]
    prompts, out = [], []
    for i in range(1000):
        src = body[(i % 3) * 4 : (i % 3) * 4 + 4]
        pid = f"q{i:04d}"
        prompts.append({"id": pid, "category": f"c{i % 12}", "text": f"prompt {i}", "chat": False})
        for rec in src:
            out.append(json.dumps(rec | {"prompt": pid} | ({"category": f"c{i % 12}"} if "category" in rec else {})))
    header["prompts"] = prompts
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps(header) + "\n" + "\n".join(out) + "\n")
    win, view = open_window(qtbot, path)
    t0 = time.process_time()  # CPU time: the machine running the tests may be shared
    view.open_run(big)  # File > Open run...
    view.table.viewport().repaint()
    seconds = time.process_time() - t0
    assert view.proxy.rowCount() == 1000 and len(view.run.results) == 2000
    click_row(view, 500)
    assert view.replayed.prompt == view.proxy.index(500, 0).data() and view.records
    assert seconds < 2.5, f"{seconds:.2f} s"  # ~0.5 s on an idle 2-core machine


def test_screenshot_of_a_stored_run(run_file, tmp_path, capsys):
    from PySide6.QtGui import QImage

    from explorer.cli.main import main

    path, _ = run_file
    out = tmp_path / "shot.png"
    argv = ["screenshot", "--view", "promptset", "--run", str(path), "--out", str(out), "--size", "1280x720",
            "--set", "prompt=p2", "--set", "config=1"]  # fmt: skip
    assert main(argv) == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 720)
    assert main(["screenshot", "--view", "promptset", "--out", str(out)]) == 2
    assert "give --run RUN.jsonl" in capsys.readouterr().err
    assert main(argv[:-4] + ["--set", "prompt=nope"]) == 2
    assert "the run has no prompt 'nope'" in capsys.readouterr().err


def test_file_menu_opens_and_saves_runs(qtbot, run_file, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from explorer.ui.window import MainWindow

    path, _ = run_file
    win = MainWindow(Session(), settings=qsettings())
    qtbot.addWidget(win)
    win.show()
    actions = {a.text(): a for a in win.menuBar().actions()[0].menu().actions()}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    actions["Open run…"].trigger()
    view = win.views["promptset"]
    assert win.active_view is view and view.proxy.rowCount() == 3 and win.player.count == len(view.records) > 0
    saved = tmp_path / "saved.jsonl"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(saved), ""))
    actions["Save run…"].trigger()
    assert saved.read_bytes() == path.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    actions["Open run…"].trigger()
    assert "not an explorer run file" in win.last_error and view.proxy.rowCount() == 3  # the shown run stays


def test_the_apps_prompt_set_run_drafts_with_heads_as_the_cli_does(qtbot, tmp_path):
    """method=eagle in the app: the heads shipped beside the demo target are loaded (not refused), recorded in the
    run's header, and the run is the one `explorer speculate --prompts F --method eagle` writes."""
    from explorer.cli.main import main
    from explorer.ui.theme import LIGHT
    from explorer.ui.views.promptset import PromptSetView

    QStandardPaths.setTestModeEnabled(True)  # the app's runs folder goes to a test location
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p.text, "id": p.id, "category": p.category}) + "\n"
                               for p in PROMPTS[:2]))  # fmt: skip
    view = PromptSetView(LIGHT)
    qtbot.addWidget(view)
    view.prompts_edit.setText(str(prompts))
    view.apply_settings({"method": "eagle", "max_new": 6})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session = Session(device="cpu")
        session.load()
        job = view.make_job(session)
        for result in job():
            view.add_record(result)
        cli_out = tmp_path / "cli.jsonl"
        tree = [f"--{key.replace('_', '-')}={view.settings_values()[key]}" for key in ("tree_depth", "tree_topk",
                                                                                      "tree_budget")]  # fmt: skip
        assert main(["speculate", "--prompts", str(prompts), "--method", "eagle", "--max-new-tokens", "6", *tree,
                     "--device", "cpu", "--out", str(cli_out)]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    app_run, cli_run = read_run(view.run.path), read_run(cli_out)
    assert app_run.header["heads"]["eagle"]["kind"] == "eagle" and app_run.header["heads"] == cli_run.header["heads"]
    assert [c.describe() for c in app_run.configurations] == [c.describe() for c in cli_run.configurations]
    assert [(r.prompt, r.token_ids, r.totals()) for r in app_run.results] == [
        (r.prompt, r.token_ids, r.totals()) for r in cli_run.results
    ]
    assert view.proxy.rowCount() == 2 and view.replayed is not None and view.replay.meta.options.method == "eagle"


def test_a_replay_asks_the_player_through_signals(qtbot, run_file):
    """The view never reaches into its window: a replayed prompt announces (step count, step to show) and a click
    in the replayed panels asks for a step; with no window listening, the view shows them itself."""
    from explorer.speculative.job import SpecRunMeta
    from explorer.ui.theme import LIGHT
    from explorer.ui.views.promptset import PromptSetView

    path, live = run_file
    view = PromptSetView(LIGHT)
    qtbot.addWidget(view)
    announced, asked = [], []
    view.steps_changed.connect(lambda count, step: announced.append((count, step)))
    view.step_requested.connect(asked.append)
    view.open_run(path)
    stored = next(r for r in live if r.prompt == "p1" and r.config == 0)
    shown = max(s.step for s in stored.steps if len(s.tree.tokens))
    assert announced == [(len(stored.steps), shown)] and view.current == view.replay.current == shown
    assert isinstance(view.replay.meta, SpecRunMeta) and view.replay.meta.prompt_ids == stored.prompt_ids
    view.replay.step_requested.emit(0)  # a click on a token of the replayed text
    assert asked == [0] and view.current == view.replay.current == 0


def test_the_view_fits_1280x720_and_presentation_mode(qtbot, run_file):
    """At 1280x720: each plot's title fits it, category names don't overlap, the α cells show their digits, no
    blank where-it-pays gap (a line says why there is none), and F11 leaves the replayed tree a fair share."""
    from PySide6.QtGui import QFontMetrics

    from explorer.speculative.describe_runs import NO_COSTS_NOTE

    path, _ = run_file
    win, view = open_window(qtbot, path)
    win.resize(1280, 720)
    qtbot.waitUntil(lambda: win.width() == 1280 and win.height() == 720)
    QApplication.processEvents()
    sp = view.set_plots

    def check_titles() -> None:
        for plot in sp.plots:
            label = plot.getPlotItem().titleLabel
            room = plot.width() - plot.getAxis("left").width()
            assert label.item.boundingRect().width() <= room, (plot.property("title"), room)

    def check_category_ticks(some: bool) -> None:
        axis, box = view.category_plot.getAxis("left"), view.category_plot.getViewBox()
        line = QFontMetrics(axis.style["tickFont"] or view.category_plot.font()).height()
        ticks = axis._tickLevels[0]
        assert not some or (ticks and ticks[0][1] == "function")
        ys = [box.mapViewToScene(box.mapToView(box.rect().center()).__class__(0, k)).y() for k, _ in ticks]
        rects = [(y - line / 2, y + line / 2) for y in ys]  # each label's bounding rect, centred on its row
        assert all(a[1] <= b[0] + 1 for a, b in zip(rects, rects[1:], strict=False)), (ticks, ys, line)

    def check_alpha_cells() -> None:
        header = view.table.horizontalHeader()
        for col, column in enumerate(view.model.columns):
            assert view.table.sizeHintForColumn(col) <= header.sectionSize(col), column.title  # nothing elided
            if column.title.startswith("α"):
                assert all(view.proxy.index(row, col).data()[0].isdigit() for row in range(view.proxy.rowCount()))

    def check_replay_labels() -> None:
        """The decision's token labels don't overlap (a short plot compares fewer tokens) and the tree's labels
        stay inside the tree plot."""
        axis, box = replay.decision_plot.getAxis("left"), replay.decision_plot.getViewBox()
        line = QFontMetrics(axis.style["tickFont"] or replay.decision_plot.font()).height()
        ticks = axis._tickLevels[0] if axis._tickLevels else []
        assert len(ticks) == 1 or len(ticks) * line <= box.height() + 1, (ticks, box.height(), line)  # ≥ its own
        tree_box = replay.tree_plot.getViewBox()
        inside = tree_box.mapRectToScene(tree_box.boundingRect()).adjusted(-2, -2, 2, 2)  # a line box's leading
        labels = [t.mapRectToScene(t.boundingRect()) for t in replay.tree_panel.texts[1:] if t.toPlainText()]
        outside = [r for r in labels if not inside.contains(r)]
        assert labels and not outside, (inside, outside)

    replay = view.replay
    check_titles()
    check_replay_labels()
    assert win.status_models.text().startswith("replaying run.jsonl (no model needed")
    assert view.category_plot.property("title") in ("tokens / step by category", "tokens / step", "tok/step")
    check_category_ticks(some=True)
    check_alpha_cells()
    assert view.category_plot.getAxis("bottom").label.isVisible()
    assert not replay.cost_plot.isVisible() and NO_COSTS_NOTE in view.header.text()
    gap = replay.decision_plot.mapTo(replay, replay.decision_plot.rect().topLeft()).x() - replay.pos_plot.mapTo(
        replay, replay.pos_plot.rect().topRight()).x()  # fmt: skip
    assert gap < 40, f"a {gap} px gap where the where-it-pays panel was"

    tree_before = replay.tree_plot.height()
    press(qtbot, win, Qt.Key.Key_F11)  # presentation mode: larger text
    qtbot.waitUntil(lambda: win.presenting)
    for _ in range(3):
        QApplication.processEvents()
        win.grab()
    assert replay.tree_plot.height() >= 0.2 * view.height() and replay.tree_plot.height() >= 0.9 * tree_before
    assert replay.height() >= replay.minimumSizeHint().height()  # the tree is not clipped: the replay fits
    check_titles()
    check_replay_labels()
    check_category_ticks(some=False)  # the plots give the tree their room: no name rather than names overlapping
    assert not view.category_plot.getAxis("bottom").label.isVisible()  # short of room: bars, not axis names
    check_alpha_cells()  # the columns grew with the font
    press(qtbot, win, Qt.Key.Key_F11)
    qtbot.waitUntil(lambda: not win.presenting)


def test_alpha_cells_show_their_digits_while_a_one_configuration_run_streams_in(qtbot, run_file):
    """A run computing in the app starts with no rows, so its columns were sized to their titles alone: under a
    single configuration the α column ("α") then elided every value to "0.…". Rows arriving size them again."""
    from explorer.speculative.runs import Run
    from explorer.ui.views.promptset.table_panel import TablePanel

    path, _ = run_file
    stored = read_run(path)
    run = Run(None, stored.header | {"configurations": stored.header["configurations"][:1]})
    panel = TablePanel()
    qtbot.addWidget(panel)
    panel.resize(600, 300)
    panel.show()
    panel.set_run(run)  # no results yet: as when Run is pressed
    for result in (r for r in stored.results if r.config == 0):
        run.results.append(result)
        panel.add(result)
    col = [c.title for c in panel.model.columns].index("α")
    assert all(panel.proxy.index(row, col).data()[0].isdigit() for row in range(panel.proxy.rowCount()))
    # as wide as its cells ask (their text and the style's margins): no cell elided
    assert panel.table.sizeHintForColumn(col) <= panel.table.horizontalHeader().sectionSize(col)
