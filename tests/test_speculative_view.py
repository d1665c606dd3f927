"""View `speculative`: real steps on the demo pair, rendered headless; clicking a token asks for its step."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")

from dataclasses import replace  # noqa: E402

from PySide6.QtCore import QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from explorer.session import Session  # noqa: E402
from explorer.speculative import stats as spec_stats  # noqa: E402
from explorer.speculative.records import DraftTree  # noqa: E402
from explorer.ui.app import render_view  # noqa: E402


@pytest.mark.parametrize("method", ["chain", "tree"])
def test_speculative_view_renders_real_steps(qtbot, method):
    win = render_view(
        Session(), "speculative", (1280, 800), settings={"method": method, "max_new": 16, "tree_budget": 8}
    )
    view = win.views["speculative"]
    try:
        assert view.records and sum(len(r.new_tokens) for r in view.records) >= 16
        assert view.meta.target_only.tokens
        # greedy speculative decoding is lossless: the same tokens as the target alone
        new = [t for r in view.records for t in r.new_tokens][:16]
        assert new == view.meta.target_only.tokens[:16]
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
        assert [s["step"] for s in data["steps"]] == list(range(1, len(view.records) + 1))  # as on screen
    finally:
        win.close()
        win.deleteLater()


def _label_rects(view):
    return [t.mapRectToScene(t.boundingRect()) for t in view.node_texts if t.toPlainText()]


def _node_points(view):
    vb = view.tree_plot.getViewBox()
    xs, ys = view.nodes.getData()
    return [vb.mapViewToScene(QPointF(float(x), float(y))) for x, y in zip(xs, ys, strict=True)]


def test_tree_labels_avoid_each_other_and_the_nodes_and_hover_tells_all(qtbot):
    settings = {"method": "tree", "max_new": 8, "tree_budget": 64, "tree_depth": 7, "tree_topk": 5}
    win = render_view(Session(), "speculative", (1280, 720), settings=settings)
    view = win.views["speculative"]
    try:
        assert max(len(r.tree.tokens) for r in view.records) >= 40  # a big tree is among the steps
        for step in range(len(view.records)):
            win.player.go(step)
            r = view.records[step]
            view.grab()  # painted: the labels follow the view box's new range
            points = _node_points(view)
            rects = [rect.adjusted(4, 4, -4, -4) for rect in _label_rects(view)]  # the text, not its 4 px margin
            assert rects and "(root)" in view.node_texts[0].toPlainText()
            for i, a in enumerate(rects):
                assert not any(a.intersects(b) for b in rects[i + 1 :]), f"labels overlap at step {step + 1}"
                assert not any(a.contains(p) for p in points), f"a label covers a node at step {step + 1}"
            # every node, labelled or not, tells its full text on hover
            assert all(f"token {int(t)}" in view._node_tip(data=i) for i, t in enumerate(r.tree.tokens))
            # the root label is the word the root token ends, never a fragment of the token
            root = view.meta.decode([r.root_token]).strip()
            assert root[:4] in view.node_texts[0].toPlainText() or "…" in view.node_texts[0].toPlainText()
            # the mask: whole cells and whole-number ticks in their middles
            ticks = view.mask_plot.getAxis("bottom")._tickLevels[0]
            assert ticks[0] == (0.5, "0") and all(float(lab) + 0.5 == x for x, lab in ticks)
            (x0, x1), (y0, y1) = view.mask_plot.getViewBox().viewRange()
            n = len(r.tree.tokens) + 1
            assert x0 < 0 and x1 > n and y0 < 0 and y1 > n
    finally:
        win.close()
        win.deleteLater()


def test_clicking_a_faded_node_selects_it_and_says_why_it_has_no_decision(qtbot):
    settings = {"method": "tree", "max_new": 12, "tree_depth": 4, "tree_topk": 3, "tree_budget": 12}
    win = render_view(Session(), "speculative", (1280, 720), settings=settings)
    view = win.views["speculative"]
    try:
        step = next(i for i, r in enumerate(view.records) if len(r.tree.tokens) > len(r.decisions))
        win.player.go(step)
        r = view.records[step]
        decided = {d.node for d in r.decisions}
        node = next(i for i in range(len(r.tree.tokens)) if i not in decided)
        point = _node_points(view)[node + 1]  # entry 0 is the root
        QTest.mouseClick(view.tree_plot.viewport(), Qt.MouseButton.LeftButton, pos=view.tree_plot.mapFromScene(point))
        assert view.selected == node
        assert "no decision" in view.decision_plot.getPlotItem().titleLabel.text
        assert view.decision_text.text().startswith(f"No decision on node {node}: ")
        assert view.decision_plot.getAxis("left")._tickLevels == [[], []]  # no stale token labels
        # a decided node shows its decision again
        point = _node_points(view)[_deciding(r) + 1]
        QTest.mouseClick(view.tree_plot.viewport(), Qt.MouseButton.LeftButton, pos=view.tree_plot.mapFromScene(point))
        assert view.selected == _deciding(r) and "p = " in view.decision_text.text()
        # a step that drafted nothing: no stale labels from the step before
        empty = replace(
            r,
            tree=DraftTree(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), []),
            p=np.zeros(0), decisions=[], accepted=[], rejected=None, mask=None, position_ids=r.position_ids[:1],
        )  # fmt: skip
        view.render(empty)
        assert view.decision_plot.getAxis("left")._tickLevels == [[], []]
        assert "nothing" in view.decision_plot.getPlotItem().titleLabel.text  # the long or the short title
        if hasattr(spec_stats, "per_head_acceptance"):  # drafting heads: which head proposed each node
            for rec in view.records:
                rec.tree.source = rec.tree.depth - 1  # as Medusa: head k drafts depth k + 1
            view.show_step(step)
            assert "proposed by head" in view._node_tip(data=0)
            assert len(view.head_bars.opts["height"]) >= 1
        view.clear()  # no records: no default axes
        assert not view.mask_plot.getPlotItem().getAxis("bottom").isVisible()
    finally:
        win.close()
        win.deleteLater()


def _deciding(r):
    return r.rejected if r.rejected is not None else r.accepted[-1]


def test_where_it_pays_panel_shows_the_measured_curve_and_this_run_on_it(qtbot):
    """After a run the view measures this machine's verification-cost curve and plots the run's tokens per step
    against the step cost it implies; a recording of the same run shows no timings."""
    from explorer.speculative.costs import APP_CURVE_SIZES as COST_SIZES

    win = render_view(Session(), "speculative", (1280, 720), settings={"method": "chain", "gamma": 3, "max_new": 16})
    view = win.views["speculative"]
    try:
        costs = view.meta.costs
        assert costs["verify_cost_curve"]["sizes"] == list(COST_SIZES)
        assert costs["tree"] is False  # a chain's steps are verified without a tree mask: the chain curve
        assert len(costs["verify_cost_curve"]["chain_ms"]) == len(COST_SIZES)
        steps = view.records
        drafted = sum(len(s.tree.tokens) for s in steps)
        assert costs["nodes_per_step"] == pytest.approx(drafted / len(steps))
        mean_tokens = sum(len(s.accepted) + 1 for s in steps) / len(steps)
        assert costs["measured_tokens_per_step"] == pytest.approx(mean_tokens)
        xs, ys = view.cost_run.getData()
        assert list(xs) == pytest.approx([drafted / len(steps)]) and list(ys) == pytest.approx([mean_tokens])
        _, need = view.cost_need.getData()
        assert list(need) == pytest.approx([costs["break_even_tokens_per_step"]])
        x_chain, y_chain = view.cost_verify.getData()
        assert x_chain[0] == 0 and y_chain[0] == pytest.approx(1.0)  # one token costs one target step
        assert "pays above" in view.cost_text.text().lower() and view._cost_cell.isVisible()
        view.deterministic = True  # as when recording: no wall-clock figures
        view.show_step(view.current)
        assert view.cost_run.getData()[0] is None or len(view.cost_run.getData()[0]) == 0
        assert "omitted in recordings" in view.cost_text.text()
    finally:
        win.close()
        win.deleteLater()


def test_one_alpha_one_speedup_and_a_readable_where_it_pays(qtbot):
    """Issue 23 items 4, 5, 6, 10: the header names α (per position) and the acceptance rate (per drafted token)
    apart, and the where-it-pays panel shows no second α; the speed is the whole run's wall time (the prompt-set
    table's figure); a last step that drafted nothing says why; the where-it-pays plot has axis labels, a legend,
    a right axis for tokens per step and a break-even line; the text's colour legend is outside the scrolled text."""
    from explorer.speculative import describe

    win = render_view(Session(), "speculative", (1280, 720), settings={"method": "chain", "gamma": 3, "max_new": 16})
    view = win.views["speculative"]
    try:
        steps, meta = view.records, view.meta
        stats = spec_stats.compute_stats(steps, sum(len(s.new_tokens) for s in steps), meta.seconds, meta.options,
                                         meta.target_only.tokens, meta.target_only.seconds)  # fmt: skip
        header = view.header.text()
        assert f"{describe.ALPHA_NAME} <b>{stats['alpha']:.2f}</b>" in header
        assert f"{describe.RATE_NAME} {stats['draft_acceptance_rate']:.2f}" in header
        assert header.count("α") == 1 and "α" not in view.cost_text.text()
        assert "(JSON: alpha)" in view.header.toolTip() and "(JSON: draft_acceptance_rate)" in view.header.toolTip()
        speedup = spec_stats.measured_speedup(len([t for s in steps for t in s.new_tokens]), meta.seconds,
                                              len(meta.target_only.tokens), meta.target_only.seconds)  # fmt: skip
        assert stats["speedup"] == pytest.approx(speedup) and f"measured <b>{speedup:.2f}×</b>" in header
        last = steps[-1]
        if not len(last.tree.tokens):  # the limit left one token: the header says so instead of "drafted 0"
            assert "nothing drafted" in header and "drafted 0," not in header
        plot = view.cost_plot.getPlotItem()
        assert plot.getAxis("left").labelText == describe.COSTS_AXIS_LEFT
        assert plot.getAxis("right").isVisible() and plot.getAxis("right").labelText == describe.COSTS_AXIS_RIGHT
        legend = _plain(view.costs_panel.legend.text())
        assert "break-even" in legend and ("this run" in legend or "● run" in legend)  # in full or short words
        assert view.costs_panel.break_even.isVisible()
        assert view.costs_panel.break_even.value() == pytest.approx(meta.costs["break_even_tokens_per_step"])
        caption = view.cost_text.toolTip()  # the whole sentence, whether the panel shows it or its short words
        assert "it pays above" in caption and "target steps" in caption
        assert "■ prompt" in view.text_legend.text() and "■ prompt" not in view.text.toHtml()
        assert view.text_legend.isVisible()
    finally:
        win.close()
        win.deleteLater()


def test_every_title_fits_its_plot_at_720p_zoomed_and_presenting(qtbot):
    """Issue 23 item 12: no title is drawn wider than its plot ("tree attention masl") at 1280x720, with larger
    text (Ctrl +) and in presentation mode: the fitter picks a shorter variant."""
    from PySide6.QtWidgets import QApplication

    win = render_view(Session(), "speculative", (1280, 720), settings={"method": "tree", "max_new": 12})
    view = win.views["speculative"]
    try:
        for presenting, zoom in ((False, None), (False, 1.25), (True, None), (True, 1.25)):
            win.set_presentation(presenting)
            win.zoom(zoom)
            win.resize(1280, 720)
            for _ in range(5):
                QApplication.processEvents()
            for plot in view.themed_plots():
                label = plot.getPlotItem().titleLabel
                sides = [plot.getAxis(side) for side in ("left", "right")]
                room = plot.width() - sum(axis.width() for axis in sides if axis.isVisible())
                assert label.item.boundingRect().width() <= room, (presenting, zoom, plot.property("title"))
                points = QApplication.font().pointSizeF()  # titles at the text's size: presenting too, not 11 pt
                assert label.opts["size"] == f"{points:.0f}pt", (presenting, zoom, label.opts["size"])
    finally:
        win.set_presentation(False)  # a later window in this process would size its panel at this text size
        win.zoom(None)
        win.close()
        win.deleteLater()


def _plain(html: str) -> str:
    """Rich text as read: tags gone, non-breaking spaces and hyphens as plain ones."""
    from PySide6.QtGui import QTextDocumentFragment

    return QTextDocumentFragment.fromHtml(html).toPlainText().replace("\xa0", " ").replace("\u2011", "-")


@pytest.mark.parametrize(("size", "short"), [((1280, 720), True), ((1920, 1080), False)])
def test_where_it_pays_keeps_its_plot_at_720p_in_short_words(qtbot, size, short):
    """Issue 23 item 10 at 1280x720: the legend (4 lines) and caption (7 lines, with auto's sentence) left the
    where-it-pays plot 40 px; where the full words would squeeze it under CostsPanel.PLOT_MIN_LINES text lines they
    give way to short ones (the whole sentence stays the caption's tooltip), and the plot and its right axis fit
    the cell. At 1920x1080 the full words show."""
    from PySide6.QtWidgets import QApplication

    win = render_view(Session(), "speculative", size, settings={"max_new": 16})  # auto: the chooser's sentence too
    view = win.views["speculative"]
    try:
        for _ in range(5):
            QApplication.processEvents()
        panel, plot = view.costs_panel, view.cost_plot
        assert view.meta.shape is not None and "★ auto" in panel.caption.text()
        line = panel.caption.fontMetrics().lineSpacing()
        assert plot.height() >= panel.PLOT_MIN_LINES * line, plot.height()
        assert plot.getViewBox().height() >= 0.5 * plot.height()  # the curves' own area, not axes and title alone
        assert plot.getPlotItem().geometry().width() <= plot.width() + 2  # the right axis inside (was 42 px out)
        caption, legend = _plain(panel.caption.text()), _plain(panel.legend.text())
        full = _plain(panel.caption.toolTip())
        assert "it pays above" in full and "★ auto" in full and "expected" in caption
        if short:
            assert caption.startswith("Pays above") and "bookkeeping" not in legend and "● run" in legend
            assert len(caption) < 0.7 * len(full)
        else:
            assert caption == full and "bookkeeping" in legend and "this run" in legend
    finally:
        win.close()
        win.deleteLater()


def test_presentation_at_720p_gives_the_tree_the_where_it_pays_room(qtbot):
    """F11 at 1280x720: the where-it-pays panel (a legend and a six-line caption at that text size) gives its room
    away, so the tree is not squeezed to a sliver; leaving presentation brings it back."""
    from PySide6.QtWidgets import QApplication

    win = render_view(Session(), "speculative", (1280, 720), settings={"method": "tree", "max_new": 12})
    view = win.views["speculative"]

    def settle() -> None:
        for _ in range(5):
            QApplication.processEvents()

    try:
        win.activateWindow()
        settle()
        assert not view._cost_cell.isHidden()
        QTest.keyClick(win, Qt.Key.Key_F11)
        qtbot.waitUntil(lambda: win.presenting)
        settle()
        assert view._cost_cell.isHidden() and view.tree_plot.height() >= 0.3 * view.height()
        QTest.keyClick(win, Qt.Key.Key_F11)
        qtbot.waitUntil(lambda: not win.presenting)
        settle()
        assert not view._cost_cell.isHidden()
    finally:
        win.close()
        win.deleteLater()


def test_without_a_draft_model_the_view_offers_what_runs_and_ctrl_r_runs_it(qtbot, tmp_path, monkeypatch):
    """Issue 23 item 7: a target without a draft model (``explorer --model X``): once loaded the view defaults to
    heads found beside the target (EAGLE first), else prompt lookup; methods that cannot run are greyed with a
    tooltip saying what they need (how to train heads); Ctrl+R runs the default without an error dialog."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from explorer.speculative import job
    from explorer.ui.window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(Session(draft_dir=None), settings=settings)
    win.resize(1280, 720)
    win.show()
    view = win.views["speculative"]
    try:
        win.select_view("speculative")
        view.max_new.setValue(8)
        with qtbot.waitSignal(win.worker.finished, timeout=60000):
            win.load_models()
        box = view.method
        enabled = {box.itemText(i): box.model().item(i).isEnabled() for i in range(box.count())}
        assert box.currentText() == "auto"  # issue 26: the heads expected to pay most, resolved when it runs
        assert not enabled["chain"] and not enabled["tree"] and enabled["lookup"] and enabled["eagle"]
        assert "needs a draft model" in box.itemData(box.findText("chain"), Qt.ItemDataRole.ToolTipRole)
        assert "the drafting expected to pay most" in view.header.text()

        monkeypatch.setattr(job, "find_heads", lambda _path: {})  # a target with no heads beside it
        view.models_ready(win.session)
        assert box.currentText() == "auto" and not box.model().item(box.findText("eagle")).isEnabled()
        tip = box.itemData(box.findText("eagle"), Qt.ItemDataRole.ToolTipRole)
        assert "explorer train-heads --model" in tip and "--kind eagle" in tip
        view.show_step(-1)
        assert "train them: explorer train-heads" in view.header.text()

        win.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=2000)
        with qtbot.waitSignal(win.worker.finished, timeout=60000):
            qtbot.keyClick(QApplication.focusWidget() or win, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        assert win.last_error is None or "draft" not in win.last_error
        assert view.records and view.meta.options.method == "lookup" and view.meta.draft is None
        assert win.progress_label.text() == f"speculative: done, {len(view.records)} steps"
        drafted = [i for i, r in enumerate(view.records) if len(r.tree.tokens)]  # the run opens where it last
        assert win.player.step == view.current == (drafted or [len(view.records) - 1])[-1]  # drafted, if it did
    finally:
        win.worker.cancel_and_wait()
        win.close()
        win.deleteLater()


def test_method_problems_name_what_each_method_needs(tmp_path):
    from explorer.speculative.job import method_problems, runnable_method

    target = tmp_path / "SmolLM2.gguf"
    problems = method_problems(Session(target_dir=target, draft_dir=None))
    assert problems["lookup"] is None and "draft model" in problems["chain"] and "draft model" in problems["tree"]
    out = tmp_path / "SmolLM2-heads-medusa"  # where find_heads looks beside a GGUF file
    assert f"--kind medusa --out {out}" in problems["medusa"]
    assert runnable_method("chain", problems) == "lookup" and runnable_method("lookup", problems) == "lookup"
