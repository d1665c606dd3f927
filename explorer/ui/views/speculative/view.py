"""View `speculative`: each speculative-decoding step on the loaded target + draft pair — the text coloured by where
each token came from, the draft tree with the accepted path, the decision on one node (p against q, u against
min(1, p/q), the residual), the tree attention mask with position ids and kept KV slots, running statistics and
where speculation pays on this machine. The view lays out its panels and hands each the step to show; the words
are explorer.speculative.describe's, the figures explorer.speculative.stats's."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from ....session import Session
from ....speculative import describe
from ....speculative.job import SpecRunMeta, effective_options, method_problems, runnable_method, speculation_job
from ....speculative.options import VIEW as SPECULATIVE_VIEW
from ....speculative.records import StepRecord
from ...theme import Theme
from ..base import View
from .costs import CostsPanel
from .decision import DecisionPanel
from .mask import MaskPanel
from .stats import StatsPanel
from .text import Header, TokenText
from .tree import TreePanel


class PlotCell(QWidget):
    """A grid cell: ``plot`` between a legend ``above`` it and its caption below (either may be None);
    ``on_resize`` hears each new size (a panel that fits its words to its room)."""

    def __init__(self, parent: QWidget, plot: QWidget, caption: QLabel | None, above: QLabel | None = None,
                 on_resize: Callable[[], None] | None = None):  # fmt: skip
        super().__init__(parent)
        self.on_resize = on_resize
        cv = QVBoxLayout(self)
        cv.setContentsMargins(0, 0, 0, 0)
        cv.setSpacing(2)
        for widget, stretch in ((above, 0), (plot, 1), (caption, 0)):
            if widget is not None:
                cv.addWidget(widget, stretch)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        if self.on_resize is not None:
            self.on_resize()


class SpeculativeView(View):
    name = "speculative"
    title = "Speculative"
    schema = SPECULATIVE_VIEW
    uses_draft = True
    meta: SpecRunMeta | None

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.selected: int | None = None  # tree node whose decision is shown
        self._selected_step = -1
        self._font = QFont()
        self._costs_wanted = True  # the where-it-pays panel, where there is room (see _place_costs)
        self._curves: dict[tuple, dict] = {}  # (target, dtype, device, prompt length) -> measured cost curve
        self._unavailable = ""  # which drafting methods these models cannot run, and how to fix it (models_ready)

        self.header = Header(self)
        self.header.setToolTip(describe.FIGURES_TIP)  # what each figure's name means
        self.text = TokenText(self)
        self.text.anchorClicked.connect(self._on_anchor)
        self.text_legend = QLabel(self)  # above the text, not in it: it stays in sight as the text scrolls
        self.tree_panel = TreePanel(self, self.titles, on_select=self._select, on_resize=self._rerender_tree)
        self.decision_panel = DecisionPanel(self, self.titles)
        self.mask_panel = MaskPanel(self, self.titles)
        self.stats_panel = StatsPanel(self, self.titles)
        self.costs_panel = CostsPanel(self, self.titles)
        self._alias_widgets()
        self._lay_out()
        for plot in self.themed_plots():
            if plot is not self.tree_plot:  # the tree re-renders on resize, title included
                self.titles.follow(plot)
        self._fit_text_heights(self.font())
        self.finish_init()

    def _alias_widgets(self) -> None:
        """The panels' widgets under the view's names (tests, tours and the GUI monkey find them here)."""
        tree, decision, mask, stats, costs = (self.tree_panel, self.decision_panel, self.mask_panel,
                                              self.stats_panel, self.costs_panel)  # fmt: skip
        self.tree_plot, self.edges, self.nodes, self.node_texts = tree.plot, tree.edges, tree.nodes, tree.texts
        self.decision_plot, self.decision_text = decision.plot, decision.caption
        self.p_bars, self.q_bars = decision.p_bars, decision.q_bars
        self.mask_plot, self.mask_image, self.mask_text = mask.plot, mask.image, mask.caption
        self.hist_plot, self.hist_bars = stats.hist_plot, stats.hist_bars
        self.pos_plot, self.pos_bars, self.head_bars = stats.pos_plot, stats.pos_bars, stats.head_bars
        self.cost_plot, self.cost_text = costs.plot, costs.caption
        self.cost_verify, self.cost_step = costs.verify, costs.step
        self.cost_need, self.cost_run = costs.need, costs.run

    def _lay_out(self) -> None:
        """Text and statistics left, the tree right of them; below the tree: costs, decision and mask."""
        self._grid = grid = QGridLayout()
        grid.addWidget(PlotCell(self, self.text, None, above=self.text_legend), 0, 0, 1, 2)
        grid.addWidget(self.hist_plot, 1, 0)
        grid.addWidget(self.pos_plot, 1, 1)
        grid.addWidget(self.tree_plot, 0, 2, 1, 3)
        cells = ((self.cost_plot, self.cost_text), (self.decision_plot, self.decision_text),
                 (self.mask_plot, self.mask_text))  # fmt: skip
        for col, (plot, caption) in enumerate(cells, start=2):
            costs = plot is self.cost_plot
            cell = PlotCell(self, plot, caption, above=self.costs_panel.legend if costs else None,
                            on_resize=self.costs_panel.fit if costs else None)  # fmt: skip
            grid.addWidget(cell, 1, col)
            if costs:
                self._cost_cell = cell
        for col, stretch in enumerate((2, 2, 3, 3, 2)):
            grid.setColumnStretch(col, stretch)
        grid.setRowStretch(0, 1)  # the decision panel (below) needs room for its bars as much as the tree does
        grid.setRowStretch(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addLayout(grid, 1)

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[StepRecord]]:
        """explorer.speculative.job's runner on the panel's settings, with this view's cache of cost curves;
        sample acceptance at temperature 0 runs at 1.0, and the temperature control says so."""
        temperature = effective_options(self.job_values()).temperature
        if temperature != self.temperature.value():
            self.temperature.setValue(temperature)
        job = speculation_job(session, self.job_values(), deterministic=self.deterministic, curves=self._curves)
        self.meta = job.meta
        return job.records

    def models_ready(self, session: Session) -> None:
        """Offer only the drafting methods these models can run (the others greyed, their tooltip saying what they
        need, e.g. how to train heads), and switch to one that runs if the chosen one cannot: heads where found
        (EAGLE first), else prompt lookup."""
        problems = method_problems(session)
        box = self.method
        for i in range(box.count()):
            why = problems[box.itemText(i)]
            box.model().item(i).setEnabled(why is None)
            box.setItemData(i, why or "", Qt.ItemDataRole.ToolTipRole)
        box.setCurrentText(runnable_method(box.currentText(), problems))
        self._unavailable = describe.unavailable_note(problems)  # the empty header shows it (the window redraws)

    # ---- rendering
    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return (self.tree_plot, self.decision_plot, self.mask_plot, self.hist_plot, self.pos_plot, self.cost_plot)

    def set_theme(self, theme: Theme) -> None:
        for panel in (self.tree_panel, self.stats_panel, self.decision_panel, self.mask_panel):
            panel.set_theme(theme)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        self.text.apply_font(font)
        self._font = QFont(font)
        self.tree_panel.set_font(font)
        self.mask_panel.font = self._font
        self._fit_text_heights(font)
        super().apply_font(font)
        self._place_costs()

    def _fit_text_heights(self, font: QFont) -> None:
        """Room for the header's three lines and the panels' captions at this font."""
        self.header.fit_height(font)
        line = QFontMetrics(font).lineSpacing()
        for caption in (self.decision_text, self.mask_text, self.cost_text):
            caption.setMinimumHeight(int(3.2 * line))

    def render(self, r: StepRecord | None) -> None:
        for plot in self.themed_plots():
            for axis in ("left", "bottom"):
                if plot is not self.tree_plot or axis == "bottom":
                    plot.showAxis(axis, r is not None)  # empty plots: no default −600..600 axes
        if r is None:
            self._render_empty()
            return
        if self._selected_step != r.step:  # a new step: show the decision that ended its walk
            self._selected_step = r.step
            self.selected = describe.deciding_node(r)
        if self.selected is not None and not 0 <= self.selected < len(r.tree.tokens):
            self.selected = describe.deciding_node(r)  # a node this step does not have
        meta, th = self.meta, self.theme
        upto = self.records[: r.step + 1]
        stats = describe.progress(upto, meta.options)
        run = describe.run_stats(self.records, meta.options, meta.target_only, meta.seconds)
        before = sum(len(s.new_tokens) for s in self.records[: r.step])
        why_empty = describe.why_nothing_drafted(r, before, meta.max_new, meta.options.method)
        self.header.setText(describe.header_html(r, len(self.records), stats, run, meta.costs, self.deterministic, th,
                                                 why_empty, describe.method_note(meta.method_choice)))  # fmt: skip
        self.text_legend.setText(describe.text_legend_html(th))
        decode = meta.decode
        self.text.show_html(describe.text_html(meta.prompt_ids, upto, r.step, decode, th) if decode else "")
        self._render_tree(r)
        self.decision_panel.render(r, self.selected, meta.options.accept, decode, th, self.font())
        self.mask_panel.render(r)
        self.mask_panel.fit_title()
        self.stats_panel.render(stats, th)
        self._render_costs()

    def _render_empty(self) -> None:
        hint = self.empty_hint(describe.method_action(self.method.currentText()))
        self.header.setText(describe.empty_header_html(hint, self.theme, self._unavailable))
        self.decision_panel.clear()
        self.text.setHtml("")
        self.text_legend.setText("")
        self.tree_panel.clear()
        self.mask_panel.clear()
        self.stats_panel.clear()
        self._render_costs()

    def _render_tree(self, r: StepRecord) -> None:
        meta = self.meta
        root = describe.root_text(r, describe.context_ids(meta.prompt_ids, self.records, r), meta.decode)
        self.tree_panel.render(r, self.selected, root, meta.decode, self.theme)

    def _rerender_tree(self) -> None:
        if 0 <= self.current < len(self.records):
            self._render_tree(self.records[self.current])

    def set_costs_visible(self, visible: bool) -> None:
        """The where-it-pays panel: hidden where a view replays stored runs in little room (prompt sets)."""
        self._costs_wanted = visible
        self._place_costs()

    COSTS_MIN_LINES = 30  # the view's height in text lines below which the where-it-pays panel gives its room away

    def _place_costs(self) -> None:
        """Shown when wanted and the view is at least COSTS_MIN_LINES lines high: in presentation mode at 720
        lines its legend and six-line caption squeezed the tree to a sliver (the header keeps the speedups)."""
        visible = self._costs_wanted and self.height() >= self.COSTS_MIN_LINES * QFontMetrics(self._font).lineSpacing()
        if visible == (not self._cost_cell.isHidden()):
            return
        self._cost_cell.setVisible(visible)
        self._grid.setColumnStretch(2, 3 if visible else 0)  # hidden: its column gives its room away, no gap

    TREE_MIN_SHARE = 0.36  # of the view's height, the least the tree's row keeps

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Where the panels' size hints add up to more than the view (presentation mode at 720 lines) Qt shares
        the deficit by size hint, not by stretch: the bottom row's captions took 310 of 633 px and the tree 174."""
        self._grid.setRowMinimumHeight(0, int(self.TREE_MIN_SHARE * event.size().height()))
        super().resizeEvent(event)
        self._place_costs()

    def _render_costs(self) -> None:
        """Where the run pays; none while it runs, in recordings (timings) or for runs that measured none."""
        if not self.records:
            self.costs_panel.render(None, "", self.theme)
            return
        meta = self.meta
        costs = None if self.deterministic else meta.costs
        note = describe.costs_note(self.deterministic, meta.measures_costs)
        shape = None if self.deterministic else meta.shape  # the chooser's report: expected times per step
        choice = describe.choice_caption(shape, meta.method_choice)
        self.costs_panel.render(costs, note, self.theme, shape, choice)

    # ---- tours
    focus_help = {"select": "a node of the draft tree (0-based, in drafting order, as the decision plot names it)"}

    def landing_step(self) -> int:
        return describe.landing_step(self.records)

    def caption_fields(self, r: StepRecord) -> dict:
        stats = describe.progress(self.records[: r.step + 1], self.meta.options)
        return describe.caption_fields(r, stats, self.meta.decode)

    def focus_problem(self, r: StepRecord, select: int) -> str | None:
        return describe.focus_problem(r, select)

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

    def _node_tip(self, x=None, y=None, data=None) -> str:
        return self.tree_panel.node_tip(x, y, data)

    def _select(self, node: int) -> None:
        self.selected = node
        self.show_step(self.current)

    # ---- export
    def export_data(self) -> dict:
        meta = self.meta.as_dict() if self.meta is not None else {}
        return {"view": self.name, **meta, "steps": [describe.export_step(s) for s in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        return describe.export_rows(self.records)
