"""View `speculative`: real steps on the demo pair, rendered headless; clicking a token asks for its step."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QUrl  # noqa: E402

from explorer.session import Session  # noqa: E402
from explorer.ui.app import render_view  # noqa: E402


@pytest.mark.parametrize("method", ["chain", "tree"])
def test_speculative_view_renders_real_steps(qtbot, method):
    win = render_view(
        Session(), "speculative", (1280, 800), settings={"method": method, "max_new": 16, "tree_budget": 8}
    )
    view = win.views["speculative"]
    try:
        assert view.records and sum(len(r.new_tokens) for r in view.records) >= 16
        assert view.meta["target_only"]["tokens"]
        # greedy speculative decoding is lossless: the same tokens as the target alone
        new = [t for r in view.records for t in r.new_tokens][:16]
        assert new == view.meta["target_only"]["tokens"][:16]
        win.player.go(1)
        assert view.current == 1 and "step 2 of" in view.header.text()
        requested = []
        view.step_requested.connect(requested.append)
        view._on_anchor(QUrl("step:0"))
        assert requested == [0] and win.player.step == 0
        image = win.grab().toImage()
        pixels = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
        assert pixels.std() > 20
        data = view.export_data()
        assert data["view"] == "speculative" and len(data["steps"]) == len(view.records)
    finally:
        win.close()
        win.deleteLater()
