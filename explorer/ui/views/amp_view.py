"""View `amp`: real mixed-precision training steps on the loaded model — gradients against the FP16 range (scaled
vs unscaled, with what each band loses), the loss scale over time with skipped steps and growth, the loss, and
which layers overflow or flush to zero, step by step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from ...amp.bands import BANDS, HIST_MAX, HIST_MIN
from ...amp.engine import AmpSettings, AmpTrainer, default_text, text_tokens, trainable_copy
from ...amp.options import VIEW as AMP_VIEW
from ...amp.records import StepRecord
from ...amp.scalers import LossScaleAtMinimum
from ...session import Session
from ..theme import Theme
from .base import View, font_plot, static_plot, theme_plot

# log2|g| edges of the FP16 bands: flushed below 2^-25 (rounds to 0), subnormal [2^-24, 2^-14), normal up to 65504
BAND_SPANS = (("flushed to 0", HIST_MIN - 1, -25, "#9aa1ab"), ("subnormal", -24, -14, "#f2c14e"),
              ("normal", -14, 16, "#2a9d8f"), ("overflow", 16, HIST_MAX + 2, "#e4572e"))  # fmt: skip


class AmpView(View):
    name = "amp"
    title = "Loss scaling"
    schema = AMP_VIEW

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.meta: dict = {}
        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.header.setMinimumHeight(3 * self.header.fontMetrics().height())

        self.hist_plot = static_plot(self, "log2 |gradient| against the FP16 range", "log2 |g|")
        self.regions = []
        for label, lo, hi, color in BAND_SPANS:
            c = pg.mkColor(color)
            c.setAlpha(45)
            region = pg.LinearRegionItem((lo, hi), movable=False, brush=c, pen=pg.mkPen(None))
            region.setZValue(-10)
            self.hist_plot.addItem(region)
            text = pg.TextItem(label, anchor=(0.5, 0), color=color)
            self.hist_plot.addItem(text)
            self.regions.append((region, text, lo, hi))
        self.unscaled_curve = self.hist_plot.plot([], [], stepMode="center", name="unscaled (g)")
        self.scaled_curve = self.hist_plot.plot([], [], stepMode="center", name="scaled (g × S)")
        self.hist_plot.addLegend(offset=(10, 10))
        self.hist_plot.getPlotItem().legend.addItem(self.unscaled_curve, "unscaled g")
        self.hist_plot.getPlotItem().legend.addItem(self.scaled_curve, "scaled g × S")
        self.band_text = QLabel(self)
        self.band_text.setWordWrap(True)
        self.band_text.setMinimumHeight(4 * self.band_text.fontMetrics().height())

        self.scale_plot = static_plot(self, "loss scale S (log2) and loss", "step")
        self.scale_curve = self.scale_plot.plot([], [], stepMode=None, name="log2 S")
        self.skip_points = pg.ScatterPlotItem(symbol="x", size=12)
        self.growth_points = pg.ScatterPlotItem(symbol="t1", size=12)
        self.scale_plot.addItem(self.skip_points)
        self.scale_plot.addItem(self.growth_points)
        self.scale_plot.setLabel("left", "log2 S")
        item = self.scale_plot.getPlotItem()
        self.loss_box = pg.ViewBox(enableMouse=False)
        item.showAxis("right")
        item.scene().addItem(self.loss_box)
        item.getAxis("right").linkToView(self.loss_box)
        item.getAxis("right").setLabel("loss")
        self.loss_box.setXLink(item)
        item.vb.sigResized.connect(lambda: self.loss_box.setGeometry(item.vb.sceneBoundingRect()))
        self.loss_curve = pg.PlotCurveItem()
        self.loss_box.addItem(self.loss_curve)
        self.step_line = pg.InfiniteLine(angle=90, movable=False)
        self.scale_plot.addItem(self.step_line)

        self.over_plot = static_plot(self, "overflow (inf/NaN or > 65504) per layer", "step")
        self.flush_plot = static_plot(self, "flushed to zero per layer (unscaled → lost without scaling)", "step")
        self.over_image = pg.ImageItem(axisOrder="row-major")
        self.flush_image = pg.ImageItem(axisOrder="row-major")
        self.over_plot.addItem(self.over_image)
        self.flush_plot.addItem(self.flush_image)
        for plot in (self.over_plot, self.flush_plot):
            plot.invertY(True)

        grid = QGridLayout()
        left = QWidget(self)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.hist_plot, 1)
        lv.addWidget(self.band_text)
        grid.addWidget(left, 0, 0)
        grid.addWidget(self.scale_plot, 0, 1)
        grid.addWidget(self.over_plot, 1, 0)
        grid.addWidget(self.flush_plot, 1, 1)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addLayout(grid, 1)

        self.build_controls()
        self.set_theme(theme)

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[StepRecord]]:
        lm = session.target
        spike = (self.spike_step.value(), self.spike_factor.value()) if self.spike_step.value() >= 0 else None
        settings = AmpSettings(
            steps=self.steps.value(),
            policy=self.policy.currentText(),
            dtype=self.dtype.currentText(),
            init_scale=2.0 ** self.init_scale_log2.value(),
            growth_interval=self.growth_interval.value(),
            spike=spike,
            seed=self.seed.value(),
        )
        settings.check()
        self.meta = {"model": str(lm.path), "settings": dict(settings.__dict__), "stopped": None}
        meta = self.meta

        def job() -> Iterator[StepRecord]:
            torch_seed = settings.seed
            import torch

            torch.manual_seed(torch_seed)
            tokens = text_tokens(lm.encode, default_text(), settings.seq_len)
            trainer = AmpTrainer(trainable_copy(lm), tokens, settings)
            meta["groups"] = list(trainer.groups)
            try:
                for _ in range(settings.steps):
                    try:
                        yield trainer.step()
                    except LossScaleAtMinimum as exc:
                        meta["stopped"] = str(exc)
                        yield exc.record
                        return
            finally:
                trainer.close()

        return job

    # ---- rendering
    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        for plot in (self.hist_plot, self.scale_plot, self.over_plot, self.flush_plot):
            theme_plot(plot, theme)
        self.unscaled_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.scaled_curve.setPen(pg.mkPen(theme.accent, width=2))
        self.scale_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.loss_curve.setPen(pg.mkPen(theme.muted, width=1.5))
        self.skip_points.setBrush(pg.mkBrush("#e4572e"))
        self.skip_points.setPen(pg.mkPen("#e4572e", width=2))
        self.growth_points.setBrush(pg.mkBrush("#2a9d8f"))
        self.step_line.setPen(pg.mkPen(theme.muted, style=Qt.PenStyle.DashLine))
        lut = np.array(
            [pg.mkColor(theme.base).getRgb()[:3]]
            + [
                (np.array(pg.mkColor(theme.base).getRgb()[:3]) * (1 - t) + np.array([228, 87, 46]) * t).astype(int)
                for t in np.linspace(0.15, 1, 255)
            ],
            dtype=np.uint8,
        )
        self.over_image.setLookupTable(lut)
        self.flush_image.setLookupTable(lut)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        for plot in (self.hist_plot, self.scale_plot, self.over_plot, self.flush_plot):
            font_plot(plot, font)
        self.show_step(self.current)

    def _arrays(self, r: StepRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.grads.currentText().startswith("activation"):
            return r.act_unscaled, r.act_scaled, r.act_hist_unscaled, r.act_hist_scaled
        return r.param_unscaled, r.param_scaled, r.param_hist_unscaled, r.param_hist_scaled

    def render(self, r: StepRecord | None) -> None:
        th = self.theme
        if r is None:
            self.header.setText(f"<span style='color:{th.muted}'>{self.empty_hint('train it')}</span>")
            for c in (self.unscaled_curve, self.scaled_curve, self.scale_curve):
                c.setData([], [])
            self.loss_curve.setData([], [])
            self.skip_points.setData([], [])
            self.growth_points.setData([], [])
            self.over_image.clear()
            self.flush_image.clear()
            self.band_text.setText("")
            return
        unscaled, scaled, h_un, h_sc = self._arrays(r)
        if unscaled is None:
            return
        # histogram over all layer groups; bin 0 is "< 2^-40", bins 1..61 are k = -40..20, the last ">= 2^21"
        edges = np.arange(HIST_MIN - 1, HIST_MAX + 3, dtype=float)
        self.unscaled_curve.setData(edges, h_un.sum(0).astype(float))
        self.scaled_curve.setData(edges, h_sc.sum(0).astype(float))
        top = max(float(h_un.sum(0).max()), float(h_sc.sum(0).max()), 1.0)
        self.hist_plot.setXRange(HIST_MIN - 1, HIST_MAX + 2, padding=0)
        self.hist_plot.setYRange(0, top * 1.15, padding=0)
        for _region, text, lo, hi in self.regions:
            text.setPos((max(lo, HIST_MIN - 1) + min(hi, HIST_MAX + 2)) / 2, top * 1.14)
        bands_un, bands_sc = unscaled.sum(0), scaled.sum(0)
        total = max(int(bands_un.sum()), 1)

        def share(b: np.ndarray, name: str) -> str:
            v = int(b[BANDS.index(name)])
            return f"{v:,} ({100 * v / total:.2f}%)"

        self.band_text.setText(
            f"<b>unscaled g</b>: flushed {share(bands_un, 'flushed')}, subnormal {share(bands_un, 'subnormal')},"
            f" overflow {share(bands_un, 'overflow')}, inf/NaN {share(bands_un, 'inf_nan')}<br>"
            f"<b style='color:{th.accent}'>scaled g × {_scale_text(r.scale)}</b>: flushed {share(bands_sc, 'flushed')},"
            f" subnormal {share(bands_sc, 'subnormal')}, overflow {share(bands_sc, 'overflow')},"
            f" inf/NaN {share(bands_sc, 'inf_nan')}"
        )
        upto = self.records[: r.step + 1]
        steps = np.array([x.step for x in upto], dtype=float)
        self.scale_curve.setData(steps, np.log2([x.scale for x in upto]))
        self.loss_curve.setData(steps, np.array([x.loss for x in upto]))
        skipped = [x for x in upto if x.skipped]
        grown = [x for x in upto if x.event == "growth"]
        self.skip_points.setData([x.step for x in skipped], [np.log2(x.scale) for x in skipped])
        self.growth_points.setData([x.step for x in grown], [np.log2(x.next_scale) for x in grown])
        n = max(len(self.records), 2)
        self.scale_plot.setXRange(-0.5, n - 0.5, padding=0)
        self.scale_plot.getAxis("bottom").setTickSpacing(*((1, 1) if n <= 12 else ()))  # whole steps
        self.step_line.setValue(r.step)
        losses = [x.loss for x in self.records if np.isfinite(x.loss)]
        if losses:
            self.loss_box.setYRange(min(losses) * 0.95, max(losses) * 1.05, padding=0)

        over, flushed = [], []
        for x in upto:
            u, s, _, _ = self._arrays(x)
            tot = np.maximum(s.sum(1), 1)
            over.append((s[:, BANDS.index("overflow")] + s[:, BANDS.index("inf_nan")]) / tot)
            flushed.append(u[:, BANDS.index("flushed")] / np.maximum(u.sum(1), 1))
        over_img = np.zeros((unscaled.shape[0], n), dtype=np.float32)
        flush_img = np.zeros_like(over_img)
        over_img[:, : len(upto)] = np.array(over).T
        flush_img[:, : len(upto)] = np.array(flushed).T
        self.over_image.setImage(np.ascontiguousarray(over_img), levels=(0, max(float(over_img.max()), 1e-9)))
        self.flush_image.setImage(np.ascontiguousarray(flush_img), levels=(0, max(float(flush_img.max()), 1e-9)))
        groups = self.meta.get("groups") or [str(i) for i in range(unscaled.shape[0])]
        ticks = [(i + 0.5, g.replace("layers.", "L")) for i, g in enumerate(groups)]
        for plot in (self.over_plot, self.flush_plot):
            left = plot.getAxis("left")
            left.setTicks([ticks])
            metrics = QFontMetrics(left.style["tickFont"] or self.font())
            left.setWidth(max(metrics.horizontalAdvance(t) for _, t in ticks) + 18)
            plot.setXRange(0, n, padding=0)
            plot.setYRange(0, len(groups), padding=0)
            every = max(1, math.ceil(n / 12))  # step i is the cell [i, i + 1]: its label sits in the middle
            plot.getAxis("bottom").setTicks([[(i + 0.5, str(i)) for i in range(0, n, every)]])

        status = "overflow → step skipped" if r.skipped else ("overflow" if r.found_inf else "clean")
        event = {"growth": "grow ×2", "backoff": "back off ×½", "stop": "stopped"}.get(r.event or "", "")
        flushed_un = bands_un[BANDS.index("flushed")] / total
        flushed_sc = bands_sc[BANDS.index("flushed")] / total
        s = self.meta.get("settings", {})
        first = f" · first overflow in <b>{r.first_overflow}</b>" if r.first_overflow else ""
        stopped = f"<br><b style='color:#e4572e'>{self.meta['stopped']}</b>" if self.meta.get("stopped") else ""
        self.header.setText(
            f"<b style='font-size:120%'>step {r.step + 1} of {len(self.records)}</b> &nbsp; {s.get('policy')} scaler,"
            f" {s.get('dtype')} autocast &nbsp; loss <b>{r.loss:.3f}</b>"
            f"{f' × {r.loss_factor:g} (spike)' if r.loss_factor != 1 else ''} &nbsp; scale 2^{np.log2(r.scale):.0f} →"
            f" 2^{np.log2(r.next_scale):.0f} &nbsp; <b>{status}</b> {event} &nbsp; growth tracker {r.growth_tracker}"
            f"{first}<br><span style='color:{th.muted}'>flushed to zero: {100 * flushed_un:.2f}% of gradient values"
            f" without scaling, {100 * flushed_sc:.2f}% with it (Micikevicius et al.)"
            f"{'' if self.deterministic else f' · {r.seconds:.2f} s'}</span>"
            f"{stopped}"
        )

    # ---- tours
    def caption_fields(self, r: StepRecord) -> dict:
        unscaled, scaled, _, _ = self._arrays(r)
        fields = {
            "loss": r.loss,
            "scale_log2": int(round(np.log2(r.scale))),
            "next_scale_log2": int(round(np.log2(r.next_scale))),
            "status": "overflow → step skipped" if r.skipped else ("overflow" if r.found_inf else "clean"),
            "event": {"growth": "grow ×2", "backoff": "back off ×½", "stop": "stopped"}.get(r.event or "", "none"),
            "first_overflow": r.first_overflow or "none",
            "skipped": sum(x.skipped for x in self.records[: r.step + 1]),
        }
        if unscaled is not None:
            total = max(int(unscaled.sum()), 1)
            fields["flushed_unscaled"] = 100 * float(unscaled[:, BANDS.index("flushed")].sum()) / total
            fields["flushed_scaled"] = 100 * float(scaled[:, BANDS.index("flushed")].sum()) / total
        return fields

    # ---- export
    def export_data(self) -> dict:
        groups = self.meta.get("groups")
        return {"view": self.name, **self.meta, "steps": [r.to_json(groups) for r in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = ["step", "loss", "scale", "next_scale", "found_inf", "skipped", "event", "first_overflow"]
        rows = [
            [r.step, r.loss, r.scale, r.next_scale, r.found_inf, r.skipped, r.event, r.first_overflow]
            for r in self.records
        ]
        return header, rows


def _scale_text(scale: float) -> str:
    """2^29 rather than 5.36871e+08: loss scales are powers of two in every policy but a static one."""
    k = math.log2(scale) if scale > 0 else math.nan
    return f"2^{k:.0f}" if math.isfinite(k) and k == round(k) else f"{scale:g}"
