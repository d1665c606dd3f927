"""View `speculative`: each speculative-decoding step on the loaded target + draft pair — the text coloured by where
each token came from, the draft tree with the accepted path, the decision on one node (p against q, u against
min(1, p/q), the residual), the tree attention mask with position ids and kept KV slots, and running statistics."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...models.generate import generate
from ...models.text import visible_token
from ...session import Session
from ...speculative import stats as spec_stats
from ...speculative.costs import verify_cost_curve, where_it_pays
from ...speculative.engine import speculate
from ...speculative.options import VIEW as SPECULATIVE_VIEW
from ...speculative.records import SpecOptions, StepRecord
from ..theme import Theme
from .base import View, font_plot, static_plot, theme_plot

ORIGIN_COLORS = {"accepted": "#2a9d8f", "corrected": "#e4572e", "bonus": "#7b61ff"}
NODE_PX = 14  # tree node size in pixels
TRUNK = 0.14  # elbow edges turn this far (in depth units) left of the children's column; labels stop before it
COST_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # verification-cost curve points measured after a run (~70 forwards)
TREE_METHODS = ("tree", "eagle", "medusa")  # may verify with a tree mask (runs saved without costs["tree"])


class SpeculativeView(View):
    name = "speculative"
    title = "Speculative"
    schema = SPECULATIVE_VIEW
    uses_draft = True
    step_requested = Signal(int)

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.meta: dict = {}
        self.selected: int | None = None  # tree node whose decision is shown
        self._selected_step = -1

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.text = QTextBrowser(self)
        self.text.setOpenLinks(False)
        self.text.anchorClicked.connect(self._on_anchor)

        self.tree_plot = static_plot(self, "draft tree: accepted path, rejected node, the rest faded")
        self.tree_plot.hideAxis("left")
        self.tree_plot.setLabel("bottom", "depth")
        self.tree_plot.invertY(True)
        self.edges = pg.PlotDataItem(connect="pairs")
        self.nodes = pg.ScatterPlotItem(symbol="s", size=NODE_PX, pxMode=True, hoverable=True, tip=self._node_tip)
        self.nodes.sigClicked.connect(self._on_node_clicked)
        self._tips: dict[int, str] = {}  # node (-1: the root) -> its full description, shown on hover
        self._font = QFont()
        self.tree_plot.getViewBox().sigResized.connect(lambda *_: self._rerender_tree())
        self.tree_plot.addItem(self.edges)
        self.tree_plot.addItem(self.nodes)
        self.node_texts: list[pg.TextItem] = []

        self.decision_plot = static_plot(self, "decision")
        self.decision_plot.setLabel("bottom", "probability")
        self.decision_plot.invertY(True)
        self.p_bars = pg.BarGraphItem(x0=[], y=[], height=0.36, width=[])
        self.q_bars = pg.BarGraphItem(x0=[], y=[], height=0.36, width=[])
        self.decision_plot.addItem(self.p_bars)
        self.decision_plot.addItem(self.q_bars)
        self.decision_plot.addLegend(offset=(-10, 10))
        self.decision_text = QLabel(self)
        self.decision_text.setWordWrap(True)

        self.mask_plot = static_plot(self, "tree attention mask")
        self.mask_plot.invertY(True)
        self.mask_plot.setAspectLocked(True)
        self.mask_plot.getViewBox().sigResized.connect(lambda *_: self._mask_ticks())
        self.mask_image = pg.ImageItem(axisOrder="row-major")
        self.mask_plot.addItem(self.mask_image)
        self.mask_text = QLabel(self)
        self.mask_text.setWordWrap(True)

        self.hist_plot = static_plot(self, "accepted per step")
        self.hist_plot.setLabel("bottom", "accepted drafts")
        self.hist_bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.hist_plot.addItem(self.hist_bars)
        self.pos_plot = static_plot(self, "α per position")
        self.pos_plot.setLabel("bottom", "draft position")
        self.pos_plot.setYRange(0, 1.05, padding=0)
        self.pos_bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.pos_plot.addItem(self.pos_bars)
        self.head_bars = pg.BarGraphItem(x=[], height=[], width=0.35)  # drafting heads: acceptance per head
        self.pos_plot.addItem(self.head_bars)

        # Where speculation pays: this machine's cost of verifying n tokens (in one-token target steps), the
        # step's cost with this run's drafting, and the run's tokens per step against it.
        self.cost_plot = static_plot(self, "where it pays", bottom="tokens verified per step")
        self.cost_verify = pg.PlotDataItem()
        self.cost_step = pg.PlotDataItem()
        self.cost_need = pg.ScatterPlotItem(symbol="o", size=9, pxMode=True)
        self.cost_run = pg.ScatterPlotItem(symbol="o", size=11, pxMode=True)
        for item in (self.cost_verify, self.cost_step, self.cost_need, self.cost_run):
            self.cost_plot.addItem(item)
        self.cost_text = QLabel(self)
        self.cost_text.setWordWrap(True)
        self._curves: dict[tuple, dict] = {}  # (target, dtype, prompt length) -> measured curve: reruns reuse it

        grid = QGridLayout()
        grid.addWidget(self.text, 0, 0, 1, 2)
        grid.addWidget(self.hist_plot, 1, 0)
        grid.addWidget(self.pos_plot, 1, 1)
        grid.addWidget(self.tree_plot, 0, 2, 1, 3)
        for col, (plot, caption) in enumerate(
            ((self.cost_plot, self.cost_text), (self.decision_plot, self.decision_text),
             (self.mask_plot, self.mask_text)), start=2,
        ):  # fmt: skip
            cell = QWidget(self)
            cv = QVBoxLayout(cell)
            cv.setContentsMargins(0, 0, 0, 0)
            cv.addWidget(plot, 1)
            cv.addWidget(caption)
            grid.addWidget(cell, 1, col)
            if plot is self.cost_plot:
                self._cost_cell = cell
        for col, stretch in enumerate((2, 2, 3, 3, 2)):
            grid.setColumnStretch(col, stretch)
        grid.setRowStretch(0, 1)  # the decision panel (below) needs room for its bars as much as the tree does
        grid.setRowStretch(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addLayout(grid, 1)

        self._title_variants: dict[pg.PlotWidget, list[str]] = {}
        for plot in self._plots():
            if plot is not self.tree_plot:  # the tree re-renders on resize, title included
                plot.getViewBox().sigResized.connect(lambda *_, p=plot: self._refit_title(p))
        self.build_controls()
        self._fit_text_heights(self.font())
        self.set_theme(theme)

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[StepRecord]]:
        target, draft, prompt_ids = session.target, session.draft, session.prompt_ids()
        accept = self.accept.currentText()
        temperature = self.temperature.value()
        if accept == "sample" and temperature <= 0:
            temperature = 1.0  # speculative sampling needs a distribution to sample from
            self.temperature.setValue(temperature)
        options = SpecOptions(
            method=self.method.currentText(),
            accept=accept,
            gamma=self.gamma.value(),
            temperature=temperature,
            seed=self.seed.value(),
            tree_depth=self.tree_depth.value(),
            tree_topk=self.tree_topk.value(),
            tree_budget=self.tree_budget.value(),
        )
        heads = session.heads_for(options.method)  # draft heads on the target (medusa, eagle, mtp), else None
        options.check(draft is not None, heads.kind if heads is not None else None)
        max_new = self.max_new.value()
        self.meta = {
            "target": str(target.path),
            "draft": str(draft.path) if draft is not None else None,
            "prompt": session.prompt,
            "prompt_ids": prompt_ids,
            "options": dict(options.__dict__),
            "decode": target.decode,
        }
        meta = self.meta
        measure = not self.deterministic  # a recording shows no timings: nothing to measure
        if measure:
            meta["costs"] = None  # measured when the run ends
        curves, key = self._curves, (str(target.path), str(target.dtype), str(target.device), len(prompt_ids))

        def job() -> Iterator[StepRecord]:
            # The target alone first, same prompt and settings: the baseline for speed and for greedy equality.
            t0 = time.perf_counter()
            base = generate(target, prompt_ids, max_new, temperature, None, options.seed)
            meta["target_only"] = {"tokens": base, "seconds": time.perf_counter() - t0}
            steps: list[StepRecord] = []
            t0 = time.perf_counter()
            for record in speculate(target, draft, prompt_ids, max_new, options, heads):
                steps.append(record)
                yield record
            seconds = time.perf_counter() - t0
            if measure and steps:  # then where this run stands on this machine's verification-cost curve
                if key not in curves:
                    curves[key] = verify_cost_curve(target.model, len(prompt_ids), sizes=COST_SIZES)
                n_new = sum(len(s.new_tokens) for s in steps)
                stats = spec_stats.compute_stats(steps, n_new, seconds, options)
                tree = any(s.mask is not None for s in steps)  # an EAGLE chain is verified as a chain
                meta["costs"] = where_it_pays(curves[key], stats, tree)

        return job

    # ---- rendering
    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        for plot in self._plots():
            theme_plot(plot, theme)
        self.edges.setPen(pg.mkPen(theme.muted, width=1.5))
        self.hist_bars.setOpts(brush=theme.bar, pen=None)
        self.pos_bars.setOpts(brush=theme.bar, pen=None)
        self.head_bars.setOpts(brush=ORIGIN_COLORS["accepted"], pen=None)
        self.p_bars.setOpts(brush=theme.bar, pen=None)
        self.q_bars.setOpts(brush=theme.accent, pen=None)
        self.mask_image.setLookupTable(
            np.array([pg.mkColor(theme.window).getRgb()[:3], pg.mkColor(theme.bar).getRgb()[:3]], dtype=np.uint8)
        )
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(font.pointSizeF() * 1.1)
        self.text.setFont(mono)
        for plot in self._plots():
            font_plot(plot, font)
        self._font = QFont(font)
        for t in self.node_texts:
            t.setFont(font)
        self._fit_text_heights(font)
        self.show_step(self.current)

    def _fit_text_heights(self, font: QFont) -> None:
        """Room for the header's three lines (the first one larger) and the panels' captions at this font."""
        line = QFontMetrics(font).lineSpacing()
        self.header.setMinimumHeight(int(3.6 * line))
        for caption in (self.decision_text, self.mask_text, self.cost_text):
            caption.setMinimumHeight(int(3.2 * line))

    def _plots(self) -> tuple[pg.PlotWidget, ...]:
        return (self.tree_plot, self.decision_plot, self.mask_plot, self.hist_plot, self.pos_plot, self.cost_plot)

    def render(self, r: StepRecord | None) -> None:
        th = self.theme
        for plot in self._plots():
            for axis in ("left", "bottom"):
                if plot is not self.tree_plot or axis == "bottom":
                    plot.showAxis(axis, r is not None)  # empty plots: no default −600..600 axes
        if r is None:
            self.header.setText(f"<span style='color:{th.muted}'>{self.empty_hint('speculate with the draft')}</span>")
            self.decision_plot.getAxis("left").setTicks([[], []])
            self._fit_title(self.decision_plot, ["decision"])
            self.text.setHtml("")
            self.edges.setData([], [])
            self.nodes.setData([], [])
            for t in self.node_texts:
                t.setText("")
            self.mask_image.clear()
            self.mask_text.setText("")
            self.decision_text.setText("")
            self.p_bars.setOpts(x0=[], y=[], width=[])
            self.q_bars.setOpts(x0=[], y=[], width=[])
            self.hist_bars.setOpts(x=[], height=[])
            self.pos_bars.setOpts(x=[], height=[])
            self.head_bars.setOpts(x=[], height=[])
            self._render_costs()
            return
        if self._selected_step != r.step:  # a new step: show the decision that ended its walk
            self._selected_step = r.step
            self.selected = _deciding_node(r)
        if self.selected is not None and not 0 <= self.selected < len(r.tree.tokens):
            self.selected = _deciding_node(r)  # a node this step does not have
        self._render_header(r)
        self.text.setHtml(self._text_html(r))
        self.text.verticalScrollBar().setValue(self.text.verticalScrollBar().maximum())
        self._render_tree(r)
        self._render_decision(r)
        self._render_mask(r)
        self._fit_title(self.mask_plot, ["tree attention mask", "attention mask", "mask"])
        self._render_stats(r)
        self._render_costs()

    def _render_header(self, r: StepRecord) -> None:
        th = self.theme
        upto = self.records[: r.step + 1]
        accepted = sum(len(s.accepted) for s in upto)
        tried = sum(len(s.accepted) + (s.rejected is not None) for s in upto)
        alpha = accepted / tried if tried else 0.0
        n_new = sum(len(s.new_tokens) for s in upto)
        spec_s = sum(s.draft_seconds + s.verify_seconds for s in upto)
        opts = self.meta.get("options", {})
        base = self.meta.get("target_only")
        speed = ""
        if self.deterministic:
            pass  # tokens/s, the measured speedup and the theory's c are timings: not in recordings
        elif base and base["seconds"] > 0 and spec_s > 0:
            base_tps = len(base["tokens"]) / base["seconds"]
            tps = n_new / spec_s
            costs = self.meta.get("costs")
            model = f", cost model {costs['model_speedup']:.2f}×" if costs else ""
            speed = (
                f" &nbsp; <b>{tps:.0f}</b> tok/s vs target alone {base_tps:.0f} → measured "
                f"<b>{tps / base_tps:.2f}×</b>{model}"
            )
        lossless = "" if opts.get("accept") != "typical" else " <span style='color:#e4572e'>(not lossless)</span>"
        self.header.setText(
            f"<b style='font-size:120%'>step {r.step + 1} of {len(self.records)}</b> &nbsp; "
            f"{opts.get('method', '')} drafting, {opts.get('accept', '')} acceptance{lossless} &nbsp; "
            f"drafted {len(r.tree.tokens)}, accepted <b>{len(r.accepted)}</b> + "
            f"{'bonus' if r.bonus_token is not None else 'corrected'} &nbsp; "
            f"α = <b>{alpha:.2f}</b> &nbsp; mean accepted {accepted / len(upto):.2f} without bonus, "
            f"{(accepted + len(upto)) / len(upto):.2f} with{speed}"
            f"<br><span style='color:{th.muted}'>{self._cost_text(r)}</span>"
        )

    def _cost_text(self, r: StepRecord) -> str:
        verify = f"one target forward over {len(r.tree.tokens) + 1} tokens"
        if self.deterministic:
            return f"draft: {r.draft_calls} calls, verify: {verify} · timings omitted in recordings"
        return (
            f"draft {r.draft_seconds * 1000:.1f} ms ({r.draft_calls} calls), "
            f"verify {r.verify_seconds * 1000:.1f} ms ({verify})"
        )

    def _text_html(self, r: StepRecord) -> str:
        th = self.theme
        decode = self.meta.get("decode")
        if decode is None:
            return ""
        parts = [f"<span style='color:{th.muted}'>{html.escape(decode(self.meta['prompt_ids']))}</span>"]
        for s in self.records[: r.step + 1]:
            current = s.step == r.step
            for tok, origin in zip(s.new_tokens, s.origins, strict=True):
                color = ORIGIN_COLORS.get(origin, th.text)
                style = f"color:{color}; text-decoration:none"
                if current:
                    style += f"; background-color:{th.highlight_bg}; font-weight:bold"
                text = html.escape(decode([tok]))
                parts.append(f"<a href='step:{s.step}' style='{style}'>{text}</a>")
        legend = " ".join(
            f"<span style='color:{c}'>■ {name}</span>" for name, c in (("prompt", th.muted), *ORIGIN_COLORS.items())
        )
        body = "".join(parts)
        return f"<div style='margin-bottom:6px'>{legend}</div><pre style='white-space:pre-wrap; margin:0'>{body}</pre>"

    def _layout_tree(self, r: StepRecord) -> tuple[np.ndarray, np.ndarray]:
        """x = depth, y = leaf order (parents centred over their children); entry 0 is the root."""
        n = len(r.tree.tokens)
        children: dict[int, list[int]] = {i: [] for i in range(-1, n)}
        for i, p in enumerate(r.tree.parent):
            children[int(p)].append(i)
        ys = np.zeros(n + 1)
        next_leaf = [0.0]

        def place(node: int) -> float:
            kids = children[node]
            if not kids:
                y = next_leaf[0]
                next_leaf[0] += 1
            else:
                y = float(np.mean([place(k) for k in kids]))
            ys[node + 1] = y
            return y

        place(-1)
        xs = np.concatenate([[0], r.tree.depth]).astype(float)
        return xs, ys

    def _fit_title(self, plot: pg.PlotWidget, variants: list[str]) -> None:
        """The first (rich-text) title of ``variants`` that fits the plot's width: a pyqtgraph title never wraps
        and its minimum width would push the grid past the window's edge."""
        # The title is centred over the view box's column, which is the plot less its left axis (not the view
        # box's own width: a long title widens that column, pushing the plot past its cell).
        left = plot.getAxis("left")
        room = plot.width() - (left.width() if left.isVisible() else 0) - 8
        label = plot.getPlotItem().titleLabel
        title = variants[-1]
        for variant in variants:  # measured as drawn (its HTML sets its own size), not estimated
            label.setText(variant, color=self.theme.text)
            if label.item.boundingRect().width() <= room:
                title = variant
                break
        plot.setProperty("title", title)
        plot.setTitle(title, color=self.theme.text)
        self._title_variants[plot] = variants

    def _refit_title(self, plot: pg.PlotWidget) -> None:
        """Titles are chosen for the plot's width: choose again when it changes (the first render may come
        before the layout has its final sizes)."""
        variants = self._title_variants.get(plot)
        if variants is not None:
            self._fit_title(plot, variants)

    def _rerender_tree(self) -> None:
        if 0 <= self.current < len(self.records):
            self._render_tree(self.records[self.current])

    def _context_ids(self, r: StepRecord) -> list[int]:
        """The tokens before step ``r`` (prompt + every earlier step's new tokens): the root is the last one."""
        ids = list(self.meta.get("prompt_ids") or [])
        for s in self.records[: r.step]:
            ids += s.new_tokens
        return ids

    def _root_text(self, r: StepRecord) -> tuple[str, str]:
        """(label, exact token) of the root: the whole word the root token ends (a subword token alone reads as a
        fragment, "ditional"), and the token itself for the tooltip."""
        decode = self.meta.get("decode")
        if decode is None:
            return str(r.root_token), str(r.root_token)
        token = decode([r.root_token])
        ids = self._context_ids(r)
        if not ids or ids[-1] != r.root_token:
            return token, token
        tail = decode(ids[-8:])
        word = tail.rstrip("\n")
        cut = max(word.rfind(c) for c in " \n\t([{.,:;=\"'")
        word = word[cut + 1 :] if cut + 1 < len(word) else word[cut:]
        return (word if word.endswith(token.strip()) and len(word) >= len(token.strip()) else token), token

    def _node_tip(self, x=None, y=None, data=None) -> str:
        return self._tips.get(int(data), "") if data is not None else ""

    def _render_tree(self, r: StepRecord) -> None:
        th = self.theme
        xs, ys = self._layout_tree(r)
        n = len(r.tree.tokens)
        parent = r.tree.parent
        has_children = np.zeros(n + 1, bool)
        ex, ey = [], []
        for i, p in enumerate(parent):  # elbow edges: parent → trunk just left of the child's column → child
            px_, py_, cx, cy = xs[p + 1], ys[p + 1], xs[i + 1], ys[i + 1]
            trunk = cx - TRUNK
            ex += [px_, trunk, trunk, trunk, trunk, cx]
            ey += [py_, py_, py_, cy, cy, cy]
            has_children[p + 1] = True
        self.edges.setData(ex, ey)
        accepted = set(r.accepted)
        decided = {d.node for d in r.decisions}
        source = getattr(r.tree, "source", None)
        brushes, pens = [pg.mkBrush(th.text)], [pg.mkPen(th.accent if self.selected == -1 else th.text)]
        for i in range(n):
            if i in accepted:
                color = ORIGIN_COLORS["accepted"]
            elif i == r.rejected:
                color = ORIGIN_COLORS["corrected"]
            else:
                color = th.grid
            brushes.append(pg.mkBrush(color))
            pens.append(pg.mkPen(th.accent if i == self.selected else color, width=3 if i == self.selected else 1))
        self.nodes.setData(xs, ys, brush=brushes, pen=pens, data=list(range(-1, n)))

        # ranges: room above the first row for its label, and right of the deepest column for its labels
        vb = self.tree_plot.getViewBox()
        w_px, h_px = max(vb.width(), 120.0), max(vb.height(), 80.0)
        fm = QFontMetrics(self._font)
        line = fm.height()
        depth_max = int(max(xs.max(), 1))
        # the root's label sits left of it, on its row (its edges leave to the right): room for it left of depth 0
        root_label, root_token = self._root_text(r)
        root_text = fm.elidedText(f"{visible_token(root_label, 24)} (root)", Qt.TextElideMode.ElideLeft, int(w_px / 4))
        left_px = fm.horizontalAdvance(root_text) + NODE_PX / 2 + 12
        x_hi = depth_max + 1.0
        x_lo = -left_px * (x_hi + 0.1) / max(w_px - left_px, 1.0) - 0.1
        rows = float(ys.max())
        est_row_px = (h_px - line) / (rows + 1.2)
        lines = 2 if est_row_px >= 2.4 * line else 1
        top_px = lines * line + 2
        row_px = (h_px - top_px) / (rows + 0.7)
        y_lo, y_hi = -top_px / max(row_px, 1e-6) - 0.05, rows + 0.6
        self.tree_plot.setXRange(x_lo, x_hi, padding=0)
        self.tree_plot.setYRange(y_lo, y_hi, padding=0)
        self.tree_plot.getAxis("bottom").setTicks([[(d, str(d)) for d in range(depth_max + 1)]])
        depth_px = w_px / (x_hi - x_lo)
        label_rows = (lines * line + 1) / max(row_px, 1e-6)  # a label's height in rows: it sits just above its row
        node_px = float(np.clip(0.8 * row_px, 4, NODE_PX))  # dense trees: smaller squares that do not overlap
        self.nodes.setSize(node_px)

        # texts and priorities: the root, the accepted path, the rejected and the selected node first, then by q
        decode = self.meta.get("decode")
        self._tips = {-1: f"root: “{root_token}” (token {r.root_token}), the last token before this step"}
        items = []  # (priority, k, one-line text, two-line text, width in px)
        for k in range(1, n + 1):
            i = k - 1
            tok = r.tree.texts[i]
            src = f" h{int(source[i])}" if source is not None else ""
            head = visible_token(tok, 24)
            full = f"{head}  q {r.tree.q[i]:.2f} p {r.p[i]:.2f}{src}"
            two = f"{head}\nq {r.tree.q[i]:.2f} p {r.p[i]:.2f}{src}"
            state = "accepted" if i in accepted else "rejected" if i == r.rejected else (
                "decided" if i in decided else "not reached by the walk")  # fmt: skip
            by = f", proposed by head {int(source[i])}" if source is not None else ""
            token_id = int(r.tree.tokens[i])
            self._tips[i] = (
                f"node {i}: “{decode([token_id]) if decode else tok}” (token {token_id}), "
                f"depth {int(r.tree.depth[i])}{by}\ndraft q {r.tree.q[i]:.4f}, target p {r.p[i]:.4f}: {state}"
            )
            important = i in accepted or i == r.rejected or i == self.selected
            prio = (0 if important else 1, -float(r.tree.q[i]))
            room = (x_hi - xs[k] if xs[k] >= depth_max else 1.0 - TRUNK) * depth_px - node_px / 2 - 10
            items.append((prio, k, full, two, room))

        placed: dict[float, list[tuple[float, float]]] = {}  # depth -> label bands (rows) already taken
        crossings: dict[float, list[float]] = {}  # depth -> rows of horizontal edges leaving that column
        for k in range(n + 1):
            if has_children[k]:
                crossings.setdefault(xs[k], []).append(ys[k])
        while len(self.node_texts) < n + 1:
            t = pg.TextItem(anchor=(0, 1))
            t.setFont(self._font)
            self.tree_plot.addItem(t)
            self.node_texts.append(t)
        texts: dict[int, str] = {0: root_text}
        for _prio, k, full, two, room in sorted(items):
            lo, hi = ys[k] - label_rows, ys[k]
            if any(a < hi and lo < b for a, b in placed.get(xs[k], [])):
                continue  # another label holds this band: hover shows this node's text
            if any(lo < y < hi - 1e-9 for y in crossings.get(xs[k], []) if y != ys[k]):
                continue  # an edge crosses the band
            if room < fm.horizontalAdvance("…") * 3:
                continue
            text = two if lines == 2 else full
            if lines == 1 and fm.horizontalAdvance(full) > room:
                text = full.split("  q ")[0]  # the token alone; q and p on hover
            text = "\n".join(fm.elidedText(part, Qt.TextElideMode.ElideRight, int(room)) for part in text.split("\n"))
            texts[k] = text
            placed.setdefault(xs[k], []).append((lo, hi))
        for k, t in enumerate(self.node_texts):
            if k not in texts:
                t.setText("")
                continue
            faded = k > 0 and (k - 1) not in accepted and (k - 1) != r.rejected
            t.setColor(th.muted if faded else th.text)
            t.setText(texts[k])
            if k == 0:
                t.setAnchor((1, 0.5))
                t.setPos(xs[k] - (node_px / 2 + 1) / depth_px, ys[k])
                continue
            t.setAnchor((0, 1))
            t.setPos(xs[k] + (node_px / 2 + 1) / depth_px, ys[k])
        hidden = n + 1 - len(texts)
        self._fit_title(
            self.tree_plot,
            [
                "draft tree: accepted path, rejected node, the rest faded"
                + (f" ({hidden} labels hidden: hover a node)" if hidden else ""),
                f"draft tree, {n} nodes" + (f" ({hidden} unlabelled: hover)" if hidden else ""),
                "draft tree",
            ],
        )

    def _render_decision(self, r: StepRecord) -> None:
        th = self.theme
        decision = next((d for d in r.decisions if d.node == self.selected), None)
        if decision is None:
            self.p_bars.setOpts(x0=[], y=[], width=[])
            self.q_bars.setOpts(x0=[], y=[], width=[])
            left = self.decision_plot.getAxis("left")
            left.setTicks([[], []])  # no stale token labels from an earlier step
            self.decision_plot.showAxis("left", False)
            self.decision_plot.showAxis("bottom", False)
            if self.selected is None or not len(r.tree.tokens):
                self._fit_title(self.decision_plot, ["no decision: nothing was drafted this step", "nothing drafted"])
                self.decision_text.setText("")
            else:
                self._fit_title(self.decision_plot, [f"node {self.selected}: no decision", "no decision"])
                self.decision_text.setText(html.escape(_why_undecided(r, self.selected)))
            return
        self.decision_plot.showAxis("left", True)
        self.decision_plot.showAxis("bottom", True)
        decode = self.meta.get("decode") or (lambda ids: str(ids))
        ids: list[int] = []
        for arr in (decision.p_top_ids, decision.q_top_ids):
            if arr is not None:
                ids += [int(i) for i in arr[:4] if int(i) not in ids]
        ids = ids[:6]
        if decision.token not in ids:
            ids[-1:] = [decision.token]
        p_map = _as_map(decision.p_top_ids, decision.p_top_probs)
        q_map = _as_map(decision.q_top_ids, decision.q_top_probs)
        y = np.arange(len(ids), dtype=float)
        self.p_bars.setOpts(x0=np.zeros(len(ids)), y=y - 0.19, width=[p_map.get(i, 0.0) for i in ids])
        self.q_bars.setOpts(x0=np.zeros(len(ids)), y=y + 0.19, width=[q_map.get(i, 0.0) for i in ids])
        widest = max([p_map.get(i, 0.0) for i in ids] + [q_map.get(i, 0.0) for i in ids] + [1e-3])
        self.decision_plot.setXRange(0, widest * 1.05, padding=0)
        self.decision_plot.setYRange(-0.6, len(ids) - 0.4, padding=0)
        labels = [("➜ " if i == decision.token else "") + visible_token(decode([i]), 12) for i in ids]
        left = self.decision_plot.getAxis("left")
        left.setTicks([list(enumerate(labels))])
        metrics = QFontMetrics(left.style["tickFont"] or self.font())
        left.setWidth(max(metrics.horizontalAdvance(t) for t in labels) + 16)
        self._fit_title(
            self.decision_plot,
            [
                f"node {decision.node}: <span style='color:{th.bar}'>■ target p</span> vs "
                f"<span style='color:{th.accent}'>■ draft q</span>",
                f"node {decision.node}: <span style='color:{th.bar}'>■ p</span> "
                f"<span style='color:{th.accent}'>■ q</span>",
            ],
        )
        verdict = "accepted" if decision.accepted else "rejected"
        rule = self.meta.get("options", {}).get("accept")
        if rule == "sample" and decision.u is not None:
            why = f"u = {decision.u:.3f} {'<' if decision.accepted else '≥'} min(1, p/q) = {decision.ratio:.3f}"
        elif rule == "typical":
            why = (
                f"p = {decision.p:.3f} vs threshold min(ε, δ·e^(−H)) = {decision.ratio:.3f}, "
                f"H = {decision.entropy:.2f} nats"
            )
        elif decision.accepted:
            why = "greedy: the draft token equals the target's argmax"
        else:
            why = "greedy: the target's argmax is another token"
        residual = ""
        if r.residual_token is not None and decision.node == r.rejected and r.residual_top_ids is not None:
            top = ", ".join(
                f"{html.escape(visible_token(decode([int(i)]), 8))} {p:.2f}"
                for i, p in zip(r.residual_top_ids[:4], r.residual_top_probs[:4], strict=True)
            )
            sampled = html.escape(visible_token(decode([r.residual_token])))
            residual = (
                f"<br>residual norm(max(0, p − q)): {top} → sampled "
                f"<b style='color:{ORIGIN_COLORS['corrected']}'>{sampled}</b>"
            )
        color = ORIGIN_COLORS["accepted"] if decision.accepted else th.accent
        self.decision_text.setText(
            f"<b>{html.escape(visible_token(decode([decision.token])))}</b>: p = {decision.p:.3f}, "
            f"q = {decision.q:.3f} → <b style='color:{color}'>{verdict}</b><br>{why}{residual}"
        )

    def _render_mask(self, r: StepRecord) -> None:
        n = len(r.tree.tokens) + 1
        mask = r.mask if r.mask is not None else np.tril(np.ones((n, n), dtype=bool))
        self.mask_image.setImage(np.ascontiguousarray(mask.astype(np.uint8)), levels=(0, 1), autoLevels=False)
        self.mask_image.setRect(0, 0, n, n)
        pad = max(0.04 * n, 0.15)  # the border cells whole, not cut by the frame
        self.mask_plot.setRange(xRange=(-pad, n + pad), yRange=(-pad, n + pad), padding=0)
        self._mask_n = n
        self._mask_ticks()
        kept = r.target_slots_kept
        pos = _runs(r.position_ids.tolist())
        self.mask_text.setText(
            f"position ids: {pos}<br>KV: target {r.target_slots_verified} slots → kept {len(kept)} new, "
            f"draft kept {len(r.draft_slots_kept)}"
        )

    def _mask_ticks(self) -> None:
        """Cell i spans [i, i + 1]: its whole-number label in the middle (0 = the root), thinned to fit."""
        n = getattr(self, "_mask_n", 0)
        if not n:
            return
        vb = self.mask_plot.getViewBox()
        side = max(min(vb.width(), vb.height()), 40.0)
        every = max(1, int(np.ceil(n * 1.6 * QFontMetrics(self._font).horizontalAdvance("00") / side)))
        every = next(e for e in (1, 2, 5, 10, 20, 50, 100) if e >= every)
        ticks = [(i + 0.5, str(i)) for i in range(0, n, every)]
        for axis in ("left", "bottom"):
            self.mask_plot.getAxis(axis).setTicks([ticks, []])

    def _render_stats(self, r: StepRecord) -> None:
        upto = self.records[: r.step + 1]
        lengths = np.array([len(s.accepted) for s in upto])
        hist = np.bincount(lengths, minlength=int(lengths.max()) + 1)
        self.hist_bars.setOpts(x=np.arange(len(hist)), height=hist)
        self.hist_plot.setXRange(-0.6, max(len(hist), 2) - 0.4, padding=0)
        self.hist_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(len(hist))]])
        top = max(int(hist.max()), 1)
        self.hist_plot.setYRange(0, top * 1.1, padding=0)
        left = self.hist_plot.getAxis("left")
        left.setTickSpacing(*((1, 1) if top <= 8 else ()))  # counts: whole numbers while they are few
        depth = max((int(s.tree.depth.max()) for s in upto if len(s.tree.tokens)), default=0)
        rates = [float((lengths > d).mean()) for d in range(depth)]
        per_head_fn = getattr(spec_stats, "per_head_acceptance", None)  # drafting heads (Medusa, EAGLE, MTP)
        per_head = per_head_fn(upto) if per_head_fn is not None else None
        if per_head:  # head k proposes position k + 1: its bar stands next to that position's
            self.pos_bars.setOpts(x=np.arange(1, depth + 1) - 0.18, height=rates, width=0.35)
            self.head_bars.setOpts(x=np.arange(1, len(per_head) + 1) + 0.18, height=per_head, width=0.35)
            depth = max(depth, len(per_head))
            th = self.theme
            self._fit_title(
                self.pos_plot,
                [
                    f"α: <span style='color:{th.bar}'>■ per position</span> "
                    f"<span style='color:{ORIGIN_COLORS['accepted']}'>■ per head</span>",
                    f"<span style='color:{th.bar}'>■ α</span> <span style='color:{ORIGIN_COLORS['accepted']}'>"
                    "■ head</span>",
                ],
            )
        else:
            self.pos_bars.setOpts(x=np.arange(1, depth + 1), height=rates, width=0.7)
            self.head_bars.setOpts(x=[], height=[])
            self._fit_title(self.pos_plot, ["α per position", "α/position", "α"])
        self.pos_plot.setXRange(0.4, max(depth, 1) + 0.6, padding=0)
        self._fit_title(self.hist_plot, ["accepted per step", "accepted/step", "accepted"])
        self.pos_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(1, depth + 1)]])

    def set_costs_visible(self, visible: bool) -> None:
        """The where-it-pays panel: hidden where a view replays stored runs in little room (prompt sets)."""
        self._cost_cell.setVisible(visible)

    def _render_costs(self) -> None:
        """The verification-cost curve (chain and tree) in one-token target steps, this run's step cost (its
        drafting and bookkeeping added) and its measured tokens per step: above the line, speculation pays."""
        th = self.theme
        costs = self.meta.get("costs") if self.records else None
        for item in (self.cost_verify, self.cost_step):
            item.setData([], [])
        self.cost_need.setData([], [])
        self.cost_run.setData([], [])
        for axis in ("left", "bottom"):
            self.cost_plot.showAxis(axis, costs is not None and not self.deterministic)
        if self.deterministic or costs is None:
            self._fit_title(self.cost_plot, ["where it pays", "pays?"])
            if self.deterministic:
                note = "timings omitted in recordings"
            elif "costs" in self.meta:
                note = "measured when the run ends: the cost of verifying 1..32 tokens on this machine"
            else:
                note = "not measured for this run (explorer speculate --costs measures it)"
            note = note if self.records else ""
            self.cost_text.setText(f"<span style='color:{th.muted}'>{note}</span>")
            return
        curve = costs["verify_cost_curve"]
        tree = costs.get("tree", self.meta.get("options", {}).get("method") in TREE_METHODS)  # older runs: by method
        base_ms = curve["base_ms"]
        sizes = np.array([0, *curve["sizes"]], dtype=float)
        verify = np.array([base_ms, *curve["tree_ms" if tree else "chain_ms"]]) / base_ms
        extra = costs["bookkeeping_ms_per_step"] / base_ms
        step = verify + sizes * costs["draft_cost_per_token"] + extra
        nodes, need = costs["nodes_per_step"], costs["break_even_tokens_per_step"]
        have = costs["measured_tokens_per_step"]
        x_hi = float(np.clip(2 * nodes + 2, 8, sizes[-1]))
        shown = sizes <= x_hi
        self.cost_verify.setData(sizes[shown], verify[shown], pen=pg.mkPen(th.bar, width=2))
        self.cost_step.setData(sizes[shown], step[shown], pen=pg.mkPen(th.accent, width=2))
        self.cost_need.setData([nodes], [need], brush=pg.mkBrush(th.base), pen=pg.mkPen(th.accent, width=2))
        color = ORIGIN_COLORS["accepted"] if have >= need else ORIGIN_COLORS["corrected"]
        self.cost_run.setData([nodes], [have], brush=pg.mkBrush(color), pen=pg.mkPen(color))
        self.cost_plot.setXRange(0, x_hi, padding=0.02)
        self.cost_plot.setYRange(0, max(float(step[shown].max()), have, need) * 1.1, padding=0)
        self._fit_title(self.cost_plot, ["where it pays (in target steps)", "where it pays", "pays?"])
        alpha_need, alpha_have = costs["break_even_alpha"], costs["measured_alpha"]
        a_need = f" (α {alpha_need:.2f})" if alpha_need is not None else ""
        a_have = f" (α {alpha_have:.2f})" if alpha_have is not None else ""
        shape = "tree" if tree else "chain"
        self.cost_text.setText(  # the caption is the legend: each figure in its curve's colour
            f"<span style='color:{th.bar}'>■ verifying {nodes:.1f} drafts ({shape})</span> costs "
            f"{costs['verify_cost_ratio']:.2f} steps; <span style='color:{th.accent}'>■ + drafting "
            f"{costs['draft_cost_per_token']:.2f}/token, bookkeeping {extra:.2f}</span>: pays above "
            f"<b>{need:.2f}</b> tokens/step{a_need}; <span style='color:{color}'>● this run "
            f"<b>{have:.2f}</b></span>{a_have} → {costs['model_speedup']:.2f}×"
        )

    # ---- tours
    focus_help = {"select": "a node of the draft tree (0-based, in drafting order, as the decision plot names it)"}

    def caption_fields(self, r: StepRecord) -> dict:
        upto = self.records[: r.step + 1]
        accepted = sum(len(s.accepted) for s in upto)
        tried = sum(len(s.accepted) + (s.rejected is not None) for s in upto)
        decode = self.meta.get("decode") or (lambda ids: " ".join(map(str, ids)))
        return {
            "drafted": len(r.tree.tokens),
            "accepted": len(r.accepted),
            "new_tokens": len(r.new_tokens),
            "text": visible_token(decode(r.new_tokens), 24),
            "ending": "bonus" if r.bonus_token is not None else "corrected",
            "alpha": accepted / tried if tried else 0.0,
            "mean_accepted": accepted / len(upto),
            "mean_with_bonus": (accepted + len(upto)) / len(upto),
            "total_tokens": sum(len(s.new_tokens) for s in upto),
        }

    def focus_problem(self, r: StepRecord, select: int) -> str | None:
        n = len(r.tree.tokens)
        if not 0 <= select < n:
            nodes = f"its nodes are 0..{n - 1}" if n else "it drafted nothing"
            return f"step {r.step + 1} has no tree node {select} ({nodes})"
        return None

    def set_focus(self, select: int | None = None, zoom: str | None = None) -> None:
        if zoom is not None:
            raise ValueError("the speculative view does not support zoom")
        if select is None or self.current < 0:
            return
        problem = self.focus_problem(self.records[self.current], select)
        if problem:
            raise ValueError(problem)
        if select != self.selected:
            self.selected = select
            self.show_step(self.current)

    # ---- interaction
    def _on_anchor(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("step:"):
            self.step_requested.emit(int(text.split(":", 1)[1]))

    def _on_node_clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            node = points[0].data()
            if node is not None and node >= 0:
                self.selected = int(node)
                self.show_step(self.current)

    # ---- export
    def export_data(self) -> dict:
        meta = {k: v for k, v in self.meta.items() if k != "decode"}
        return {"view": self.name, **meta, "steps": [s.as_dict() for s in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = ["step", "drafted", "accepted", "rejected_node", "new_tokens", "origins", "draft_ms", "verify_ms"]
        rows = [
            [
                s.step,
                len(s.tree.tokens),
                len(s.accepted),
                s.rejected,
                " ".join(map(str, s.new_tokens)),
                " ".join(s.origins),
                s.draft_seconds * 1000,
                s.verify_seconds * 1000,
            ]
            for s in self.records
        ]
        return header, rows


def _runs(values: list[int]) -> str:
    """ "12 13 13 13 14" as "12 13×3 14": a tree's position ids repeat once per node of a depth."""
    out: list[str] = []
    for v in values:
        if out and out[-1].split("×")[0] == str(v):
            k = int(out[-1].split("×")[1]) + 1 if "×" in out[-1] else 2
            out[-1] = f"{v}×{k}"
        else:
            out.append(str(v))
    return " ".join(out)


def _why_undecided(r: StepRecord, node: int) -> str:
    """Why the acceptance walk made no decision on ``node``: it only tries children of accepted nodes, in order,
    and stops at the first rejection with no sibling left to try."""
    parent = int(r.tree.parent[node])
    decided = {d.node for d in r.decisions}
    if parent >= 0 and parent not in r.accepted:
        return f"No decision on node {node}: its parent, node {parent}, was not accepted, so the walk never reached it."
    siblings = [d.node for d in r.decisions if d.node != node and int(r.tree.parent[d.node]) == parent]
    taken = [i for i in siblings if i in r.accepted]
    if taken:
        return f"No decision on node {node}: the walk accepted its sibling, node {taken[0]}, and went on from there."
    if r.rejected is not None and r.rejected in decided:
        return f"No decision on node {node}: the walk ended at node {r.rejected}, rejected, before trying it."
    return f"No decision on node {node}: the walk ended before reaching it."


def _deciding_node(r: StepRecord) -> int | None:
    """The node whose decision ended the step's walk: the rejected one, else the deepest accepted one."""
    return r.rejected if r.rejected is not None else (r.accepted[-1] if r.accepted else None)


def _as_map(ids: np.ndarray | None, probs: np.ndarray | None) -> dict[int, float]:
    if ids is None or probs is None:
        return {}
    return {int(i): float(p) for i, p in zip(ids, probs, strict=True)}
