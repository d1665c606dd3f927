"""View `amp`: real fp16 training steps on the demo target, the scaler backing off from 2^32, rendered headless."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from explorer.session import Session  # noqa: E402
from explorer.ui.app import render_view  # noqa: E402


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
        view.grads.setCurrentText("activation gradients")
        win.player.go(2)
        assert "step 3 of 5" in view.header.text()
        image = win.grab().toImage()
        pixels = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
        assert pixels.std() > 20
        assert view.export_data()["steps"][0]["found_inf"] is True
    finally:
        win.close()
        win.deleteLater()
