"""View `generate`: step through decoding — the text so far with the current token marked, the top-k next-token
distribution with the chosen token highlighted, and entropy / chosen probability over all steps."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QLabel,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ...models.generate import GenerateRecord, generate_records
from ...models.options import GENERATE
from ...models.text import visible_token
from ...session import Session
from ..theme import Theme
from .base import View, theme_plot

SHOW_TOP = 10


class GenerateView(View):
    name = "generate"
    title = "Generate"
    schema = GENERATE

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.meta: dict = {}
        self.header = QLabel(self)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.text = QTextBrowser(self)
        self.text.setOpenLinks(False)
        self.text.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)

        self.bars_plot = pg.PlotWidget(self)
        self.bars_plot.setMenuEnabled(False)
        self.bars_plot.setMouseEnabled(False, False)
        self.bars_plot.hideButtons()
        self.bars_plot.invertY(True)
        self.bars_plot.setXRange(0, 1.0, padding=0.02)
        self.bars_plot.setYRange(-0.6, SHOW_TOP - 0.4, padding=0)
        self.bars_plot.setLabel("bottom", "probability")
        self.bars_plot.setTitle("next-token distribution (top 10)")
        self.bars = pg.BarGraphItem(x0=np.zeros(0), y=np.zeros(0), height=0.72, width=np.zeros(0))
        self.bars_plot.addItem(self.bars)
        self.bar_texts = [pg.TextItem(anchor=(0, 0.5)) for _ in range(SHOW_TOP)]
        for t in self.bar_texts:
            self.bars_plot.addItem(t)

        self.trend_plot = pg.PlotWidget(self)
        self.trend_plot.setMenuEnabled(False)
        self.trend_plot.setMouseEnabled(False, False)
        self.trend_plot.hideButtons()
        self.trend_plot.setLabel("bottom", "step")
        self.trend_plot.setLabel("left", "entropy (bits)")
        self.entropy_curve = self.trend_plot.plot([], [])  # its legend is the title: a legend box covered the curves
        # p(chosen) lives on its own 0..1 axis on the right, in a view box linked to the plot's x axis.
        item = self.trend_plot.getPlotItem()
        self.prob_box = pg.ViewBox(enableMouse=False)
        item.showAxis("right")
        item.scene().addItem(self.prob_box)
        item.getAxis("right").linkToView(self.prob_box)
        item.getAxis("right").setLabel("p")  # short: the title names it p(chosen); a long label clips at 1.5x text
        self.prob_box.setXLink(item)
        self.prob_box.setYRange(0, 1.02, padding=0)
        item.vb.sigResized.connect(lambda: self.prob_box.setGeometry(item.vb.sceneBoundingRect()))
        self.chosen_curve = pg.PlotCurveItem()
        self.prob_box.addItem(self.chosen_curve)
        self.step_line = pg.InfiniteLine(angle=90, movable=False)
        self.trend_plot.addItem(self.step_line)

        right = QSplitter(Qt.Orientation.Vertical, self)
        right.addWidget(self.bars_plot)
        right.addWidget(self.trend_plot)
        right.setSizes([640, 300])
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.text)
        split.addWidget(right)
        split.setSizes([450, 550])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addWidget(split, 1)

        self.build_controls()
        self.set_theme(theme)

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[GenerateRecord]]:
        lm, prompt_ids = session.target, session.prompt_ids()
        temperature, top_k = self.temperature.value(), self.top_k.value() or None
        max_new, seed = self.max_new.value(), self.seed.value()
        self.meta = {
            "model": str(lm.path),
            "prompt": session.prompt,
            "prompt_ids": prompt_ids,
            "temperature": temperature,
            "top_k": top_k,
            "seed": seed,
            "device": str(lm.device),
            "dtype": str(lm.dtype).removeprefix("torch."),
            "decode": lm.decode,
        }
        return lambda: generate_records(lm, prompt_ids, max_new, temperature, top_k, seed, show=SHOW_TOP)

    # ---- rendering
    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        for plot in (self.bars_plot, self.trend_plot):
            theme_plot(plot, theme)
        self.entropy_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.chosen_curve.setPen(pg.mkPen(theme.accent, width=2))
        for curve in (self.entropy_curve.curve, self.chosen_curve):
            curve.setSegmentedLineMode("on")  # thick lines as segments: far cheaper to paint than one long path
        self.step_line.setPen(pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DashLine))
        self._trend_title()
        for t in self.bar_texts:
            t.setColor(theme.text)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        """Plots do not inherit the application font: push it (font scaling, presentation mode)."""
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(font.pointSizeF() * 1.15)
        self.text.setFont(mono)
        small = QFont(font)
        for plot in (self.bars_plot, self.trend_plot):
            for axis in ("left", "bottom", "right"):
                plot.getAxis(axis).setStyle(tickFont=small)
                plot.getAxis(axis).label.setFont(small)
            plot.getPlotItem().titleLabel.setText(plot.getPlotItem().titleLabel.text, size=f"{font.pointSizeF():.0f}pt")
        self._title_pt = font.pointSizeF()
        self._trend_title()
        tick_font = QFont(mono)
        tick_font.setPointSizeF(font.pointSizeF())
        self.bars_plot.getAxis("left").setStyle(tickFont=tick_font)
        for t in self.bar_texts:
            t.setFont(small)
        self.show_step(self.current)

    def _trend_title(self) -> None:
        th = self.theme
        self.trend_plot.getPlotItem().setTitle(
            f"<span style='color:{th.bar}'>━ entropy, bits</span> &nbsp; "
            f"<span style='color:{th.accent}'>━ p(chosen)</span>",
            size=f"{getattr(self, '_title_pt', 10.0):.0f}pt",
            color=th.text,
        )

    def render(self, r: GenerateRecord | None) -> None:
        th = self.theme
        for plot in (self.bars_plot, self.trend_plot):  # empty plots: no default −600..600 axes
            for axis in ("left", "bottom"):
                plot.getPlotItem().showAxis(axis, r is not None)
        self.trend_plot.getPlotItem().showAxis("right", r is not None)
        if r is None:
            self.header.setText(f"<span style='color:{th.muted}'>{self.empty_hint('decode')}</span>")
            self.text.setHtml("")
            self.bars.setOpts(x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0), brushes=[])
            for t in self.bar_texts:
                t.setText("")
            self.bars_plot.getAxis("left").setTicks([[]])
            self.entropy_curve.setData([], [])
            self.chosen_curve.setData([], [])
            return
        mode = "greedy" if r.temperature <= 0 else f"T = {r.temperature:g}" + (f", top-k {r.top_k}" if r.top_k else "")
        self.header.setText(
            f"<b style='font-size:125%'>step {r.step + 1} of {len(self.records)}</b>"
            f"&nbsp;&nbsp; chosen <b style='color:{th.accent}'>{html.escape(visible_token(r.token_text, 24))}</b>"
            f" (id {r.token_id}) &nbsp; p = <b>{r.chosen_prob:.3f}</b> &nbsp; rank {r.chosen_rank + 1}"
            f" &nbsp; entropy <b>{r.entropy_bits:.2f}</b> bits &nbsp; {mode}"
            + ("" if self.deterministic else f" &nbsp; <span style='color:{th.muted}'>{r.seconds * 1000:.1f} ms</span>")
        )
        self.text.setHtml(self._text_html(r))
        sb = self.text.verticalScrollBar()
        sb.setValue(sb.maximum())

        k = len(r.top_ids)
        ys = np.arange(k, dtype=float)
        chosen = r.top_ids == r.token_id
        brushes = [pg.mkBrush(th.accent if c else th.bar) for c in chosen]
        self.bars.setOpts(x0=np.zeros(k), y=ys, width=r.top_probs.astype(float), brushes=brushes, pens=[None] * k)
        labels = [visible_token(t) for t in r.top_texts]
        left = self.bars_plot.getAxis("left")
        left.setTicks([list(enumerate(labels))])
        # pyqtgraph drops tick labels wider than the axis: size the axis for the longest token.
        metrics = QFontMetrics(left.style["tickFont"] or self.font())
        left.setWidth(max(metrics.horizontalAdvance(t) for t in labels) + 18)
        for i, t in enumerate(self.bar_texts):
            if i < k:
                p = float(r.top_probs[i])
                t.setText(f"{p:.3f}")
                t.setAnchor((1.05, 0.5) if p > 0.85 else (-0.05, 0.5))
                t.setColor(th.accent_text if p > 0.85 else th.text)
                t.setPos(p, i)
            else:
                t.setText("")
        steps = np.arange(1, r.step + 2, dtype=float)
        upto = self.records[: r.step + 1]
        self.entropy_curve.setData(steps, np.array([x.entropy_bits for x in upto]))
        self.chosen_curve.setData(steps, np.array([x.chosen_prob for x in upto]))
        self.trend_plot.setXRange(0.5, max(len(self.records), 2) + 0.5, padding=0)
        self.step_line.setValue(r.step + 1)

    def caption_fields(self, r: GenerateRecord) -> dict:
        return {
            "token": visible_token(r.token_text, 24),
            "p": r.chosen_prob,
            "rank": r.chosen_rank + 1,
            "entropy": r.entropy_bits,
        }

    def _text_html(self, r: GenerateRecord) -> str:
        th = self.theme
        ids = r.context_ids
        prompt = self._decode(ids[: r.n_prompt])
        before = self._decode(ids[r.n_prompt :])
        token = r.token_text
        shown = html.escape(token).replace("\n", "⏎\n") if token.strip() == "" else html.escape(token)
        return (
            f"<pre style='white-space:pre-wrap; margin:0'>"
            f"<span style='color:{th.muted}'>{html.escape(prompt)}</span>"
            f"<span style='color:{th.text}'>{html.escape(before)}</span>"
            f"<span style='background-color:{th.highlight_bg}; color:{th.text}; font-weight:bold'>{shown}</span>"
            f"</pre>"
        )

    def _decode(self, ids: list[int]) -> str:
        decode = self.meta.get("decode")
        return decode(ids) if decode else ""

    # ---- export
    def export_data(self) -> dict:
        meta = {k: v for k, v in self.meta.items() if k != "decode"}
        return {"view": self.name, **meta, "steps": [r.as_dict() for r in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = [
            "step",
            "token_id",
            "token_text",
            "chosen_prob",
            "chosen_rank",
            "entropy_bits",
            "top1_text",
            "top1_prob",
            "seconds",
        ]
        rows = [
            [
                r.step,
                r.token_id,
                r.token_text,
                r.chosen_prob,
                r.chosen_rank + 1,
                r.entropy_bits,
                r.top_texts[0],
                float(r.top_probs[0]),
                r.seconds,
            ]
            for r in self.records
        ]
        return header, rows
