"""View `amp`: real fp16 training steps on the demo target, the scaler backing off from 2^32, rendered headless."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QFontMetrics  # noqa: E402

from explorer.amp.options import VIEW  # noqa: E402
from explorer.session import Session  # noqa: E402
from explorer.ui.app import render_view  # noqa: E402


def test_amp_view_starts_from_gradscalers_default_scale():
    assert VIEW.options["init_scale_log2"].default == 16  # torch.amp.GradScaler's init_scale 2^16


def test_amp_view_backs_off_and_renders(qtbot):
    settings = {"steps": 5, "init_scale_log2": 32, "growth_interval": 2}
    win = render_view(Session(draft_dir=None), "amp", (1280, 800), settings=settings)
    view = win.views["amp"]
    try:
        records = view.records
        assert len(records) == 5
        assert records[0].scale == 2.0**32 and records[0].found_inf and records[0].skipped
        assert records[0].next_scale == 2.0**31  # GradScaler's backoff
        for a, b in zip(records, records[1:], strict=False):
            assert b.scale == a.next_scale
        assert "scaler" in view.header.text() and "unscaled g</b>: flushed " in view.band_text.text()
        # the fp32 reference counts what the fp16 backward lost; the histogram says what it leaves out
        assert "lost in the fp16 backward" in view.band_text.text() and "lost to zero" in view.header.text()
        assert records[0].param_lost is not None
        win.player.go(0)
        assert "inf/NaN" in view.nonfinite_text.toPlainText()  # 2^32 overflows: most scaled values are inf/NaN
        win.player.go(4)
        assert all(bar.isVisible() for bar in view.colorbars)
        lo, hi = view.colorbars[1].levels()
        assert lo == 0 and hi >= float(view.flush_image.image.max()) > 0  # the colour scale covers the cells
        # 30 layers: row labels thinned to at most one per line of text
        view.heatmaps.relabel(["embed", *(f"layers.{i}" for i in range(30)), "head"])
        labels = view.over_plot.getAxis("left")._tickLevels[0]
        line = view.over_plot.getAxis("left").style["tickFont"]
        assert 2 <= len(labels) < 32 and labels[0][1] == "embed" and labels[-1][1] == "head"
        rows_apart = min(b[0] - a[0] for a, b in zip(labels, labels[1:], strict=False))
        gap = view.over_plot.getViewBox().height() / 32 * rows_apart
        assert gap >= (QFontMetrics(line).height() if line else 10)
        view.grads.setCurrentText("activation gradients")
        win.player.go(2)
        assert "step 3 of 5" in view.header.text()
        image = win.grab().toImage()
        pixels = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
        assert pixels.std() > 20
        assert view.export_data()["steps"][0]["found_inf"] is True
        view.clear()  # no data: no axes with pyqtgraph's default range
        assert not view.hist_plot.getPlotItem().getAxis("bottom").isVisible()
    finally:
        win.close()
        win.deleteLater()


def _pixel(plot, x: float, y: float) -> tuple[int, int, int]:
    """The colour the plot widget shows at data point (x, y)."""
    from PySide6.QtCore import QPointF

    image = plot.grab().toImage()
    pos = plot.mapFromScene(plot.getViewBox().mapViewToScene(QPointF(x, y)))
    c = image.pixelColor(pos.x(), pos.y())
    return c.red(), c.green(), c.blue()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_one_inf_shows_on_the_heatmap_and_steps_count_from_one(qtbot, theme):
    """From 2^22 the demo target overflows step after step; step 8 holds a single inf among ~2M values (0.00%):
    its cell is coloured and outlined in the first-overflow layer's row. The header's step number is where the
    timeline's marker, its last point and the heatmaps' column sit, for the first step and the last."""
    from explorer.amp import describe

    settings = {"steps": 8, "init_scale_log2": 22, "growth_interval": 4}
    win = render_view(Session(draft_dir=None), "amp", (1280, 720), settings=settings, theme=theme)
    view = win.views["amp"]
    try:
        rec = view.records
        tiny = [r for r in rec if r.found_inf and 0 < describe.layer_shares([r], False, 1)[0].max() < 0.01]
        assert tiny, [(r.step, r.found_inf) for r in rec]  # an overflow step whose share rounds to 0.00%
        r = tiny[-1]
        win.player.go(r.step)
        k = r.step + 1
        assert f"step {k} of 8" in view.header.text() and "first overflow in" in view.header.text()
        row = describe.overflow_row(r, view.meta.groups)
        assert row is not None
        plot = view.over_plot
        background = _pixel(plot, len(rec) + 0.3, len(view.meta.groups) - 0.5)  # an empty corner cell
        cell = _pixel(plot, k, row + 0.5)
        assert sum(abs(a - b) for a, b in zip(cell, background, strict=True)) > 60, (cell, background)
        assert view.heatmaps.overflow_cell.isVisible()
        assert view.heatmaps.overflow_cell.rect().center().x() == k
        for i in (0, len(rec) - 1):
            win.player.go(i)
            assert f"step {i + 1} of 8" in view.header.text() and win.player.label.text() == f"step {i + 1} / 8"
            assert view.timeline.step_line.value() == i + 1
            assert view.timeline.scale_curve.getData()[0][-1] == i + 1
        ticks = dict((v, t) for v, t in view.over_plot.getAxis("bottom")._tickLevels[0])
        assert ticks[1] == "1"
        data = view.export_data()["steps"]
        assert [s["step"] for s in data] == list(range(1, 9))
        assert [row[0] for row in view.export_rows()[1]] == list(range(1, 9))
    finally:
        win.close()
        win.deleteLater()
