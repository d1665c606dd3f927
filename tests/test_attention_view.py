"""The attention view: the Qt-free walk over the kernel's tiles (order, partial outputs, HBM bytes, unsafe softmax,
FA-4 rescales) and the view itself rendered headless on a tiny model and on the shipped demo target.

The tiny model (helpers of test_checkpoint_errors) keeps everything fast in the Triton interpreter: prompts under
64 tokens, 16x16 tiles.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint_errors import build_model_dir

from explorer.attention.walk import (
    FP16_OVERFLOW,
    AttentionWalk,
    allowed_mask,
    attention_walk,
    fa4_rescales,
    hbm_traffic,
    unsafe_softmax,
    walk_order,
)
from explorer.models.checkpoint import default_model_dirs, load_model
from explorer.session import Session

pytest.importorskip("transformers")

PROMPT = "hello world, the quick brown fox jumps over the lazy dog; a tiny tokenizer"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("attention-view") / "tiny-llama", max_position_embeddings=64)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_model(tiny_dir, dtype="float32", device="cpu")


def walk_steps(lm, causal=True, dtype="float32", backend="auto", length=55):
    ids = lm.encode(PROMPT)
    return list(attention_walk(lm, ids, 1, 2, 16, 16, causal, dtype, backend, length))


# ---------------------------------------------------------------- the Qt-free walk


@pytest.mark.parametrize("causal", [True, False])
def test_walk_follows_the_kernel_order_over_visited_tiles_only(tiny, causal):
    steps = walk_steps(tiny, causal=causal)
    walk: AttentionWalk = steps[0].walk
    tr = walk.trace
    assert all(s.walk is walk for s in steps)  # one shared trace, cheap steps
    assert len(steps) == tr.meta.tiles_visited and tr.meta.n > 32  # several Q blocks
    pairs = [(s.q_block, s.kv_block) for s in steps]
    assert pairs == walk_order(tr.tile_state)
    assert pairs == sorted(pairs)  # Q blocks in grid order, KV tiles left to right inside each
    assert all(tr.tile_state[i, j] != 0 for i, j in pairs)
    assert [s.step for s in steps] == list(range(len(steps)))
    nq, nkv = tr.tile_state.shape
    for i in range(nq):
        tiles = [j for (q, j) in pairs if q == i]
        want = list(range(min(nkv, i + 1))) if causal else list(range(nkv))  # square blocks: causal stops at i
        assert tiles == want
    if causal:
        assert tr.meta.tiles_skipped == nq * (nq - 1) // 2
        assert all(s.masked == (s.q_block == s.kv_block) for s in steps)  # only the diagonal band is masked
    else:
        assert tr.meta.tiles_skipped == 0


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float16", 5e-3)])
def test_partial_outputs_converge_to_the_kernel_output(tiny, dtype, tol):
    steps = walk_steps(tiny, dtype=dtype)
    walk = steps[0].walk
    tr = walk.trace
    for s in steps:
        if s.last_in_block:
            assert s.max_distance < tol  # acc / l after the last tile is the kernel's O
        if s.first_in_block and not s.last_in_block:
            last = next(t for t in steps if t.q_block == s.q_block and t.last_in_block)
            assert s.mean_distance > 10 * last.max_distance
    # the kernel's m after each tile is max(m before, this tile's row max) (natural units, float64 recomputed)
    for s in steps:
        rows = s.rows[1] - s.rows[0]
        m_after = tr.m[s.q_block, s.kv_block, :rows]
        prev = tr.m[s.q_block, s.kv_block - 1, :rows] if not s.first_in_block else np.full(rows, -np.inf)
        want = np.fmax(prev, walk.tile_rowmax[s.q_block, s.kv_block, :rows])
        np.testing.assert_allclose(m_after, want, rtol=1e-3, atol=2e-3 if dtype == "float16" else 1e-4)
    assert walk.final_distances().max() < tol


def test_walk_summary_and_steps_are_plain_json(tiny):
    n_prompt = len(tiny.encode(PROMPT))
    steps = walk_steps(tiny, length=n_prompt + 8)
    walk = steps[0].walk
    assert walk.n_prompt == n_prompt and walk.trace.n == n_prompt + 8  # the greedy continuation was appended
    data = {**walk.summary(), "steps": [s.as_dict() for s in steps]}
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["tiles_visited"] == len(steps) and back["steps"][0]["step"] == 0
    assert back["hbm"]["naive_bytes"] > 0 and back["unsafe_softmax"]["scores"] == n_prompt + 8 + (
        (n_prompt + 8) * (n_prompt + 8 - 1) // 2
    )
    assert back["backend_label"] in ("Triton interpreter on CPU", "Triton on GPU", "torch tiled twin (no Triton)")


def test_length_is_clipped_to_the_context(tiny):
    steps = walk_steps(tiny, length=10_000)
    assert steps[0].walk.trace.n == tiny.config.max_position_embeddings  # "Length 64" on a 64-token context: N = 64
    n_prompt = len(tiny.encode(PROMPT))
    assert walk_steps(tiny, length=4)[0].walk.trace.n == n_prompt  # a prompt that long already: nothing added


def test_hbm_formula():
    # N = 100, D = 64, 32-wide tiles: 4 Q blocks x 4 KV tiles; the last tile holds 4 keys.
    n, d, bn = 100, 64, 32
    causal = np.tril(np.ones((4, 4), np.int8))
    full = np.ones((4, 4), np.int8)
    h = hbm_traffic(n, d, bn, causal, "float16", True)
    assert h["naive_bytes"] == 2 * (4 * n * d + 4 * n * n)
    keys = [32, 64, 96, 100]  # keys each Q block reads (causal: up to its diagonal tile)
    assert h["kv_reads_per_block"] == keys
    assert h["flash_bytes"] == 2 * (2 * n * d + 2 * d * sum(keys)) + 4 * n
    f = hbm_traffic(n, d, bn, full, "float32", False)
    assert f["flash_bytes"] == 4 * (2 * n * d + 2 * d * 4 * n) + 4 * n  # K and V once per Q block
    assert f["naive_bytes"] == 4 * (4 * n * d + 4 * n * n)
    assert h["ratio"] > 1


def test_unsafe_softmax_counts_fp16_overflow():
    scores = np.array([[5.0, 0, 0], [11.0, 11.2, 0], [20.0, -3.0, 90.0]], np.float32)
    allowed = allowed_mask(3, causal=True)
    u = unsafe_softmax(scores, allowed)
    assert u["scores"] == 6
    assert u["fp16_inf"] == 3  # 11.2, 20, 90 (11.0 < ln 65520 = 11.09)
    assert u["fp16_nan_rows"] == 2
    assert u["fp32_inf"] == 1  # 90 > 88.72
    assert math.isclose(u["fp16_threshold"], FP16_OVERFLOW) and 11.08 < FP16_OVERFLOW < 11.1
    # exp(11) + exp(11) overflows the fp16 sum though no single term does
    u2 = unsafe_softmax(np.full((2, 2), 11.0, np.float32), allowed_mask(2, causal=False))
    assert u2["fp16_inf"] == 0 and u2["fp16_sum_overflow_rows"] == 2


def test_fa4_rescales_only_on_big_jumps():
    ln2 = math.log(2.0)
    # one row, 5 tiles; row max in log2 units: 0, 3 (FA2 rescales), 2 (none), 9 (FA2; FA-4: 9 - 0 > 8), 12 (FA2)
    t = np.array([0, 3, 2, 9, 12], float) * ln2
    fa2, fa4, stale = fa4_rescales(t.reshape(1, 5, 1))
    assert fa2[0, :, 0].tolist() == [False, True, False, True, True]
    assert fa4[0, :, 0].tolist() == [False, False, False, True, False]
    np.testing.assert_allclose(stale[0, :, 0] / ln2, [0, 0, 0, 9, 9], atol=1e-5)
    # a row with no allowed key in the first tile (NaN) starts at its first real tile
    t2 = np.array([np.nan, 1.0, 30.0]) * ln2
    fa2, fa4, _ = fa4_rescales(t2.reshape(1, 3, 1))
    assert fa2[0, :, 0].tolist() == [False, False, True] and fa4[0, :, 0].tolist() == [False, False, True]


def test_sliding_window_mask():
    a = allowed_mask(6, causal=True, sliding_window=3)
    assert a[5].tolist() == [False, False, False, True, True, True]
    assert a[1].tolist() == [True, True, False, False, False, False]
    assert allowed_mask(4, causal=False).all()


# ---------------------------------------------------------------- the words (Qt-free describe) and the block series

def _ink():
    from explorer.attention.describe import Ink

    return Ink(text="#111", muted="#666", accent="#e45", bar="#47a", alpha="#3a3", ok="#2e4")


def test_describe_formats_numbers():
    from explorer.attention.describe import fmt_bytes, range_tip, sci

    assert fmt_bytes(393_216) == "393 KB" and fmt_bytes(12) == "12 B" and fmt_bytes(2.5e9) == "2.5 GB"
    assert sci(None) == "–" and sci(0) == "0" and sci(0.25) == "0.25" and sci(5e-6) == "5.0e-06"
    assert range_tip("tiny", 4, "heads") == "tiny has 4 heads: 0 .. 3"


def test_describe_header_titles_and_captions(tiny):
    from explorer.attention import describe

    steps = walk_steps(tiny)
    walk, ink = steps[0].walk, _ink()
    first, last = steps[0], steps[-1]
    text = describe.header_html(first, len(steps), ink, unsafe=False, fa4=False)
    lines = text.split("<br>")
    assert len(lines) == 3 and f"step 1 of {len(steps)}" in lines[0] and "Q block <b>0</b>" in lines[0]
    assert f"layer 1 · head 2 (kv head {walk.meta.kv_head})" in lines[1] and walk.backend_label in lines[1]
    assert "Tri Dao" in lines[2] and "pass" in lines[2] and f"color:{ink.ok}" in lines[2]
    both = describe.header_html(first, len(steps), ink, unsafe=True, fa4=True).split("<br>")
    assert "unsafe softmax" in both[3] and "FA-4 conditional rescaling" in both[4]
    worst = describe.header_html(first, len(steps), ink, unsafe=False, fa4=False, worst=True)
    assert "last tile of this Q block" in worst and f"step {len(steps)} of {len(steps)}" in worst
    assert len(describe.matrix_titles(last, ink)) == 3 and describe.matrix_titles(last, ink)[-1] == "scores s = q·kᵀ/√D"
    row = walk.shown_row(last, None)
    long_m, *_ = describe.m_titles(last, row, ink, fa4=True)
    label, short = describe.row_labels(last, row)
    assert label.startswith(short + " “") and label in long_m and "FA-4" in long_m
    assert "at the last tile" in describe.distance_titles(last, row, ink)[0]
    assert describe.m_axis_label(True) == "m (log₂)" and describe.m_axis_label(False) == "m (nat)"
    fields = describe.caption_fields(last, row)
    assert fields["tiles_total"] == walk.meta.tiles_visited + walk.meta.tiles_skipped
    assert fields["row"] == last.rows[0] + row
    header, rows = describe.export_table(steps)
    assert header[:4] == ["step", "q_block", "kv_block", "state"] and len(rows) == len(steps)
    assert all(len(r) == len(header) for r in rows) and rows[0][3] == "masked"
    legend = describe.legend_html({k: (1, 2, 3) for k in ("done", "pending", "never", "masked", "overflow")}, ink, True)
    assert "rgb(1,2,3)" in legend and "exp(s) = inf in fp16" in legend


def test_block_series_and_the_row_shown(tiny):
    steps = walk_steps(tiny)
    walk = steps[0].walk
    s = steps[-1]
    b = walk.block(s.q_block)
    assert walk.block(s.q_block) is b  # kept
    assert b.m.shape == (walk.trace.tile_state.shape[1], b.rows) == b.distance.shape
    assert b.m_range[0] <= np.nanmin(b.m) and b.d_max == np.nanmax(b.distance) and b.l_range[0] > 0
    assert not (b.alpha == 0).any()  # alpha 0 (a row's first tile) is not drawn on the log axis
    rescales = walk.fa2_rescale[s.q_block, :, : b.rows].sum(0)
    assert rescales[b.busiest_row] == rescales.max()
    assert walk.shown_row(s, None) == b.busiest_row
    assert walk.shown_row(s, s.rows[0] + 1) == 1 and walk.shown_row(s, s.rows[0] - 1) == b.busiest_row
    assert walk.step_index[s.q_block, s.kv_block] == s.step
    assert (walk.step_index[walk.trace.tile_state == 0] == -1).all()
    assert walk.block_key_end(s.q_block) == s.keys[1]
    lo, hi = walk.score_levels
    assert lo < hi and walk.score_image().dtype == np.float32


# ---------------------------------------------------------------- the view


def _grab_pixels(win) -> np.ndarray:
    image = win.grab().toImage()
    assert image.width() > 0
    pixels = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes()).reshape(-1, 4)
    return pixels.copy()  # the buffer dies with the image


def _close(win) -> None:
    win.worker.cancel_and_wait()
    win.close()
    win.deleteLater()


def _check_view(qtbot, win, tmp_path) -> None:
    from PySide6.QtWidgets import QApplication

    view = win.views["attention"]
    assert win.active_view is view
    qtbot.wait(80)  # the window renders a burst of records on its ~33 ms live-render timer
    n = len(view.records)
    assert n >= 3 and n == view.walk.trace.meta.tiles_visited
    assert view.current == n - 1 and f"step {n} of {n}" in view.header.text()
    assert "Tri Dao" in view.header.text() and "HBM" in view.header.text()

    pixels = _grab_pixels(win)
    assert pixels.std() > 20 and len(np.unique(pixels[::97], axis=0)) > 20  # not blank

    last_overlay = view.scores.overlay_img.image.copy()
    last_box = view.scores.tile_box.getData()
    win.player.first()
    assert view.current == 0 and "step 1 of" in view.header.text()
    assert not np.array_equal(view.scores.overlay_img.image, last_overlay)  # other tiles done / pending
    assert not np.array_equal(view.scores.tile_box.getData()[0], last_box[0]) or not np.array_equal(
        view.scores.tile_box.getData()[1], last_box[1]
    )
    first_overlay = view.scores.overlay_img.image.copy()
    win.player.forward()
    assert view.current == 1 and "step 2 of" in view.header.text()
    win.player.back()
    assert view.current == 0
    np.testing.assert_array_equal(view.scores.overlay_img.image, first_overlay)  # stepping back: the same picture
    scores_image = view.scores.scores_img.image.copy()
    view.show_step(-1)  # an empty step (the GUI monkey met it), then a step again: the matrix comes back whole
    assert view.scores.scores_img.image is None
    view.show_step(0)
    np.testing.assert_array_equal(view.scores.scores_img.image, scores_image)
    np.testing.assert_array_equal(view.scores.overlay_img.image, first_overlay)
    # tiles' states: one pixel per tile; the static marks: exactly the masked entries of the tiles the kernel visits
    assert view.scores.overlay_img.image.shape[:2] == view.walk.trace.tile_state.shape
    tr = view.walk.trace
    row_block, col_block = np.arange(tr.n) // tr.block_m, np.arange(tr.n) // tr.block_n
    visited = (view.walk.step_index >= 0)[row_block[:, None], col_block[None, :]]
    masked_marks = ~view.walk.allowed & visited
    np.testing.assert_array_equal(view.scores.marks_img.image[..., 3] > 0, masked_marks)
    win.player.last()
    # every step keeps the accuracy line and one header height (the plots below do not jump while stepping)
    heights = set()
    for step in range(n):
        win.player.go(step)
        QApplication.processEvents()
        assert "max |O − O<sub>float64</sub>|" in view.header.text() and "pass" in view.header.text()
        heights.add(view.header.height())
    assert len(heights) == 1
    assert all(view.matrix.getPlotItem().getAxis(a).isVisible() for a in ("left", "bottom"))

    view.unsafe.setValue(True)
    view.fa4.setValue(True)
    view.units.setValue("base 2")
    QApplication.processEvents()
    assert "unsafe softmax" in view.header.text() and "FA-4" in view.header.text()
    np.testing.assert_array_equal(view.scores.marks_img.image[..., 3] > 0, masked_marks | view.walk.fp16_overflow)
    assert "log₂" in view.m_plot.getAxis("left").labelText
    win.set_theme("dark")
    assert view.theme.name == "dark"
    win.zoom(1.15)
    win.zoom(None)

    data = json.loads(win.export_data(tmp_path / "attention.json").read_text())
    assert data["view"] == "attention" and len(data["steps"]) == n
    assert data["hbm"]["flash_bytes"] > 0 and "within_2x_sdpa" in data
    csv_lines = win.export_data(tmp_path / "attention.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,q_block,kv_block,state") and len(csv_lines) == n + 1
    # steps count from 1 in the exports as in the header and the player ("step 1 of n")
    assert [s["step"] for s in data["steps"]] == list(range(1, n + 1))
    assert [int(line.split(",")[0]) for line in csv_lines[1:]] == list(range(1, n + 1))
    assert win.export_png(tmp_path / "attention.png").stat().st_size > 5000


def test_view_on_a_tiny_model(qtbot, tiny_dir, tmp_path):
    from explorer.ui.app import render_view

    session = Session(target_dir=tiny_dir, draft_dir=None, prompt=PROMPT, device="cpu")
    settings = {"layer": 1, "head": 3, "block_m": 16, "block_n": 16, "length": 40}
    win = render_view(session, "attention", (1280, 720), settings=settings)
    try:
        view = win.views["attention"]
        assert view.walk.trace.meta.head == 3 and view.walk.trace.meta.block_m == 16
        _check_view(qtbot, win, tmp_path)
    finally:
        _close(win)


def test_view_settings_clamp_to_the_model(qtbot, tiny_dir):
    from explorer.ui.app import render_view

    session = Session(target_dir=tiny_dir, draft_dir=None, prompt=PROMPT, device="cpu")
    win = render_view(session, "attention", (960, 600), settings={"layer": 50, "head": 9, "block_m": 40})
    try:
        view = win.views["attention"]
        meta = view.walk.trace.meta
        assert meta.layer == 1 and meta.head == 3  # the spin boxes' ranges follow the loaded model
        assert view.block_m.value() == 32  # powers of two only
    finally:
        _close(win)


@pytest.mark.skipif(
    not (default_model_dirs()["target"] / "config.json").exists(),
    reason="the demo target is not trained yet (explorer train-demo)",
)
def test_view_on_the_demo_models(qtbot, tmp_path):
    from explorer.ui.app import render_view

    win = render_view(Session(), "attention", (1280, 720), settings={"layer": 2, "block_m": 32, "block_n": 32})
    try:
        meta = win.views["attention"].walk.trace.meta
        assert meta.n > 64 and meta.within_2x_sdpa
        _check_view(qtbot, win, tmp_path)
    finally:
        _close(win)


def _titles_fit(win) -> list[str]:
    """The plot titles (the plots' legends) of the attention view drawn wider than their column or past the window's
    right edge, and the matrix legend if its wrapped text is taller than its box."""
    import pyqtgraph as pg
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    for _ in range(2):  # painting measures the tick labels and widens the axes: as a screenshot and the screen do
        win.grab()
        QApplication.processEvents()
    view = win.views["attention"]
    bad = []
    for plot in view.findChildren(pg.PlotWidget):
        if not plot.isVisible():
            continue
        label = plot.getPlotItem().titleLabel
        width = label.item.boundingRect().width()
        column = plot.width() - plot.getAxis("left").width()  # the view box's column when nothing widens it
        right = plot.mapTo(win, QPoint(plot.width(), 0)).x()  # the plot's own right edge, in the window
        if width > column or right > win.width():
            bad.append(f"{plot.property('title')} ({width:.0f} px in {column} px, plot's right edge {right})")
    legend = view.scores.legend
    if legend.heightForWidth(legend.width()) > legend.height():
        bad.append(f"legend: {legend.text()}")
    return bad


@pytest.mark.skipif(
    not (default_model_dirs()["target"] / "config.json").exists(),
    reason="the demo target is not trained yet (explorer train-demo)",
)
@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_legends_fit_at_every_step(qtbot, size):
    """Issue 23: at 1280x720 the ‖acc/l − O‖ plot's legend (its title) lost its end ('row 95 “·if” ━' and no more)
    at the window's right edge. Stepped with the arrow keys, every title and the matrix legend fit, every step."""
    from PySide6.QtCore import Qt

    from explorer.ui.app import render_view

    win = render_view(Session(), "attention", size, step=4)  # Q block 2's row 95, " if": the longest legend
    try:
        assert _titles_fit(win) == []  # as `explorer screenshot` draws it
        win.show()
        win.activateWindow()
        qtbot.waitExposed(win)
        qtbot.keyClick(win, Qt.Key.Key_Home)
        assert win.player.step == 0
        seen = set()
        for i in range(win.player.count):
            assert win.player.step == i and win.player.label.text() == f"step {i + 1} / {win.player.count}"
            assert f"step {i + 1} of {win.player.count}" in win.views["attention"].header.text()
            assert _titles_fit(win) == [], f"step {i + 1}"
            seen.add(win.views["attention"].blocks.d_plot.property("title"))
            qtbot.keyClick(win, Qt.Key.Key_Right)
        assert any("each row" in t and "“" in t for t in seen) or size[0] < 1600  # the long legend where it fits
    finally:
        win.close()
        win.deleteLater()
