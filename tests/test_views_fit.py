"""Every view at 1280x720 and 1920x1080, in and out of presentation mode: each plot stays inside its widget (a
title or axis too wide for it pushed the plot past its cell: the where-it-pays right axis, the autograd memory
bars) and its title is drawn at the text's size (pyqtgraph kept titles at 11 pt beside presentation's text)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from explorer.session import Session  # noqa: E402
from explorer.ui.app import render_view  # noqa: E402

SMALL = {  # quick runs: the layout, not the computation, is under test
    "generate": {"max_new": 8},
    "attention": {},
    "speculative": {"max_new": 8},
    "amp": {"steps": 4},
    "autograd": {},
    "ddp": {"ranks": 2, "steps": 1},
}


@pytest.fixture(scope="module")
def session():
    s = Session()
    s.load()
    return s


@pytest.mark.parametrize("view", list(SMALL))
def test_every_plot_stays_inside_its_widget_and_titles_follow_the_text(qtbot, session, view):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    win = render_view(session, view, (1280, 720), settings=SMALL[view])
    v = win.views[view]
    win.activateWindow()
    try:
        for size in ((1280, 720), (1920, 1080)):
            for presenting in (False, True):
                if win.presenting != presenting:
                    QTest.keyClick(win, Qt.Key.Key_F11)  # the key a teacher presses
                    qtbot.waitUntil(lambda p=presenting: win.presenting == p)
                win.resize(*size)
                for _ in range(3):
                    win.grab()  # painting measures tick labels and widens axes: the layout follows
                    QApplication.processEvents()
                points = QApplication.font().pointSizeF()
                for plot in v.themed_plots():
                    if not plot.isVisible():
                        continue
                    where = (view, size, presenting, plot.property("title"))
                    item = plot.getPlotItem()
                    assert item.geometry().width() <= plot.width() + 1, where
                    assert item.titleLabel.opts.get("size") == f"{points:.0f}pt", where
    finally:
        win.set_presentation(False)  # a later window in this process would size its panel at this text size
        win.close()
        win.deleteLater()
