"""View `amp`: real mixed-precision training steps on the loaded model — gradients against the FP16 range (scaled
vs unscaled, with what each band loses), the loss scale over time with skipped steps and growth, the loss, and
which layers overflow or flush to zero, step by step. The run is explorer.amp.job's; the words and the numbers
drawn are explorer.amp.describe's; the view lays out its panels and hands each the step to show."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QWidget

from ....amp import describe
from ....amp.job import AmpRunMeta
from ....amp.options import VIEW as AMP_VIEW
from ....amp.records import StepRecord
from ...theme import Theme
from ..base import View
from .heatmaps import LayerHeatmaps
from .histogram import GradientHistogram
from .timeline import ScaleTimeline


class AmpView(View):
    name = "amp"
    title = "Loss scaling"
    schema = AMP_VIEW
    meta: AmpRunMeta | None

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self._axes_on: bool | None = None
        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.header.setMinimumHeight(3 * self.header.fontMetrics().height())
        self.histogram = GradientHistogram(self, self.titles)
        self.timeline = ScaleTimeline(self)
        self.heatmaps = LayerHeatmaps(self)
        # the panels' parts that tests and scripts read by their old names
        self.hist_plot, self.band_text = self.histogram.plot, self.histogram.band_text
        self.nonfinite_text = self.histogram.nonfinite_text
        self.over_plot, self.flush_plot = self.heatmaps.over_plot, self.heatmaps.flush_plot
        self.flush_image, self.colorbars = self.heatmaps.flush_image, self.heatmaps.colorbars

        self.lay_out_under_header(
            [[self.histogram, self.timeline.plot], [self.heatmaps.over_plot, self.heatmaps.flush_plot]], (3, 2)
        )
        self.finish_init()

    # ---- theme and font
    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return self.histogram.plot, self.timeline.plot, self.heatmaps.over_plot, self.heatmaps.flush_plot

    def set_theme(self, theme: Theme) -> None:
        for panel in (self.histogram, self.timeline, self.heatmaps):
            panel.set_theme(theme)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        self.histogram.apply_font(font)
        self.heatmaps.apply_font(font)
        super().apply_font(font)

    # ---- rendering
    def _activation(self) -> bool:
        """Whether the histogram and heatmaps show activation gradients (else parameter gradients)."""
        return self.grads.currentText().startswith("activation")

    def _show_axes(self, on: bool) -> None:
        """Axes only with data: empty plots would show pyqtgraph's default range (−600..600, "(x0.001)")."""
        if self._axes_on == on:
            return
        self._axes_on = on
        for panel in (self.histogram, self.timeline, self.heatmaps):
            panel.show_axes(on)

    def render(self, r: StepRecord | None) -> None:
        g = describe.gradients(r, self._activation()) if r is not None else None
        self.histogram.fit_title(self.theme, None if g is None else g.lost is not None)
        if r is None:
            self.header.setText(f"<span style='color:{self.theme.muted}'>{self.empty_hint('train it')}</span>")
            for panel in (self.histogram, self.timeline, self.heatmaps):
                panel.clear()
            self._show_axes(False)
            return
        if g.unscaled is None:
            return
        self._show_axes(True)
        self.histogram.show(g, r.scale, self.theme.accent)
        self.timeline.show(self.records, r)
        upto = self.records[: r.step + 1]
        over, flushed = describe.layer_shares(upto, self._activation(), max(len(self.records), 2))
        groups = self.meta.groups if self.meta.groups else [str(i) for i in range(over.shape[0])]
        self.heatmaps.show(over, flushed, groups, r.step + 1, describe.overflow_row(r, groups))
        s = self.meta.settings
        self.header.setText(describe.header_html(r, len(self.records), s.policy, s.dtype, self.meta.stopped, g,
                                                 muted=self.theme.muted, seconds=not self.deterministic))  # fmt: skip

    # ---- tours
    def caption_fields(self, r: StepRecord) -> dict:
        return describe.caption_fields(r, self.records, self._activation())

    # ---- export
    def export_data(self) -> dict:
        meta = self.meta.to_json() if self.meta is not None else {}
        groups = self.meta.groups if self.meta is not None else None
        # steps count from 1 here as on screen (the header, the player, the axes); record.step is the 0-based index
        return {"view": self.name, **meta, "steps": [{**r.to_json(groups), "step": r.step + 1} for r in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = ["step", "loss", "scale", "next_scale", "found_inf", "skipped", "event", "first_overflow"]
        rows = [
            [r.step + 1, r.loss, r.scale, r.next_scale, r.found_inf, r.skipped, r.event, r.first_overflow]
            for r in self.records
        ]
        return header, rows
