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
        # the fp32 reference first, under the fp16 curves: it shows where it runs on below them (under 2^-24)
        self.reference_curve = self.hist_plot.plot([], [], stepMode="center")
        self.unscaled_curve = self.hist_plot.plot([], [], stepMode="center")
        self.scaled_curve = self.hist_plot.plot([], [], stepMode="center")
        self.hist_plot.getViewBox().sigResized.connect(lambda *_: self._set_hist_title(self._shown_record()))
        self.nonfinite_text = pg.TextItem(anchor=(1, 0))  # "86% inf/NaN (not drawn)": the bins hold finite values
        self.hist_plot.addItem(self.nonfinite_text, ignoreBounds=True)
        self.hint = pg.TextItem(anchor=(0.5, 0.5))
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

        self.over_plot = static_plot(self, "overflow per layer (% inf/NaN or > 65504)", "step")
        self.flush_plot = static_plot(self, "lost to zero per layer without scaling (%)", "step")
        self.over_image = pg.ImageItem(axisOrder="row-major")
        self.flush_image = pg.ImageItem(axisOrder="row-major")
        self.over_plot.addItem(self.over_image)
        self.flush_plot.addItem(self.flush_image)
        self.colorbars = []
        for plot, image in ((self.over_plot, self.over_image), (self.flush_plot, self.flush_image)):
            plot.invertY(True)
            bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=12, colorMapMenu=False)
            bar.setImageItem(image, insert_in=plot.getPlotItem())
            self.colorbars.append(bar)
            plot.getViewBox().sigResized.connect(self._thin_rows)
        self._row_ticks: dict[int, list[str]] = {}  # the row labels each heatmap shows (set again only on change)
        self._font = QFont()

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
            reference=self.reference.isChecked(),
            train_layers=self.train_layers.value(),
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
        self.reference_curve.setPen(pg.mkPen(theme.muted, width=3, style=Qt.PenStyle.DotLine))
        self.nonfinite_text.setColor("#e4572e")
        self.scale_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.loss_curve.setPen(pg.mkPen(theme.muted, width=1.5))
        self.skip_points.setBrush(pg.mkBrush("#e4572e"))
        self.skip_points.setPen(pg.mkPen("#e4572e", width=2))
        self.growth_points.setBrush(pg.mkBrush("#2a9d8f"))
        self.step_line.setPen(pg.mkPen(theme.muted, style=Qt.PenStyle.DashLine))
        base = np.array(pg.mkColor(theme.base).getRgb()[:3], float)
        hot = np.array([228, 87, 46], float)
        # 0 is the background; anything above it starts at a visible tint (a few values in a layer still show)
        cmap = pg.ColorMap([0.0, 0.004, 1.0], [base, base * 0.85 + hot * 0.15, hot])
        for bar in self.colorbars:
            bar.setColorMap(cmap)
            bar.axis.setPen(theme.muted)
            bar.axis.setTextPen(theme.text)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        self._font = QFont(font)
        for plot in (self.hist_plot, self.scale_plot, self.over_plot, self.flush_plot):
            font_plot(plot, font)
        for bar in self.colorbars:
            bar.axis.setStyle(tickFont=font)
        for text in (self.nonfinite_text, *(t for _, t, _, _ in self.regions)):
            text.setFont(font)
        self._row_ticks = {}
        self.show_step(self.current)

    def _thin_rows(self) -> None:
        """Layer names on the heatmaps' rows, as many as fit: every k-th one at least a line apart (30-layer
        models), the first and last always."""
        groups = self.meta.get("groups") or []
        for plot in (self.over_plot, self.flush_plot):
            left = plot.getAxis("left")
            font = left.style["tickFont"] or self.font()
            line = QFontMetrics(font).height()
            rows = max(len(groups), 1)
            px = plot.getViewBox().height() / rows if plot.getViewBox().height() > 0 else line
            every = max(1, math.ceil(1.05 * line / max(px, 1e-6)))
            shown = [i for i in range(len(groups)) if i % every == 0 or i == len(groups) - 1]
            if len(shown) > 1 and shown[-1] - shown[-2] < every:  # the last label would crowd its neighbour
                shown.pop(-2)
            ticks = [(i + 0.5, groups[i].replace("layers.", "L")) for i in shown]
            if [t for _, t in ticks] == self._row_ticks.get(id(plot)):
                continue
            left.setTicks([ticks, []])
            self._row_ticks[id(plot)] = [t for _, t in ticks]
            if ticks:
                left.setWidth(max(QFontMetrics(font).horizontalAdvance(t) for _, t in ticks) + 18)

    def _arrays(self, r: StepRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.grads.currentText().startswith("activation"):
            return r.act_unscaled, r.act_scaled, r.act_hist_unscaled, r.act_hist_scaled
        return r.param_unscaled, r.param_scaled, r.param_hist_unscaled, r.param_hist_scaled

    def _show_axes(self, on: bool) -> None:
        """Axes only with data: empty plots would show pyqtgraph's default range (−600..600, "(x0.001)")."""
        if getattr(self, "_axes_on", None) == on:
            return
        self._axes_on = on
        for plot in (self.hist_plot, self.scale_plot, self.over_plot, self.flush_plot):
            for axis in ("left", "bottom"):
                plot.getPlotItem().showAxis(axis, on)
        self.scale_plot.getPlotItem().showAxis("right", on)
        for region, text, _, _ in self.regions:
            region.setVisible(on)
            text.setVisible(on)
        for bar in self.colorbars:
            bar.setVisible(on)

    def render(self, r: StepRecord | None) -> None:
        th = self.theme
        self._set_hist_title(r)
        if r is None:
            self.header.setText(f"<span style='color:{th.muted}'>{self.empty_hint('train it')}</span>")
            for c in (self.unscaled_curve, self.scaled_curve, self.reference_curve, self.scale_curve):
                c.setData([], [])
            self.loss_curve.setData([], [])
            self.skip_points.setData([], [])
            self.growth_points.setData([], [])
            self.over_image.clear()
            self.flush_image.clear()
            self.nonfinite_text.setText("")
            self.band_text.setText("")
            self.step_line.hide()
            self._show_axes(False)
            return
        unscaled, scaled, h_un, h_sc = self._arrays(r)
        if unscaled is None:
            return
        self._show_axes(True)
        self.step_line.show()
        params = not self.grads.currentText().startswith("activation")
        lost = r.param_lost if params and r.param_lost is not None else None
        # histogram over all layer groups; bin 0 is "< 2^-40", bins 1..61 are k = -40..20, the last ">= 2^21"
        edges = np.arange(HIST_MIN - 1, HIST_MAX + 3, dtype=float)
        self.unscaled_curve.setData(edges, h_un.sum(0).astype(float))
        self.scaled_curve.setData(edges, h_sc.sum(0).astype(float))
        tops = [float(h_un.sum(0).max()), float(h_sc.sum(0).max()), 1.0]
        if lost is not None:
            h_ref = r.param_hist_reference.sum(0).astype(float)
            self.reference_curve.setData(edges, h_ref)
            tops.append(float(h_ref.max()))
        else:
            self.reference_curve.setData([], [])
        top = max(tops)
        self.hist_plot.setXRange(HIST_MIN - 1, HIST_MAX + 2, padding=0)
        self.hist_plot.setYRange(0, top * 1.15, padding=0)
        for _region, text, lo, hi in self.regions:
            if hi > HIST_MAX + 1:  # the overflow band: most of it is off the axis, its label sits at the right edge
                text.setAnchor((1, 0))
                text.setPos(HIST_MAX + 2, top * 1.14)
            else:
                text.setPos((max(lo, HIST_MIN - 1) + min(hi, HIST_MAX + 2)) / 2, top * 1.14)
        bands_un, bands_sc = unscaled.sum(0), scaled.sum(0)
        total = max(int(bands_un.sum()), 1)
        bad = int(bands_sc[BANDS.index("inf_nan")])
        if bad / total >= 0.0005:  # the histogram counts finite values only: say how much it leaves out
            self.nonfinite_text.setText(f"{_pct(bad, total)} inf/NaN\nnot drawn")
            self.nonfinite_text.setPos(HIST_MAX + 1.6, top * 0.9)
        else:
            self.nonfinite_text.setText("")

        def share(b: np.ndarray, name: str) -> str:
            v = int(b[BANDS.index(name)])
            return f"{v:,} ({100 * v / total:.2f}%)"

        lost_text = ""
        if lost is not None:
            n_lost = int(lost.sum())
            lost_text = (
                f"<br><b>lost in the fp16 backward</b> (zero here, non-zero in an fp32 backward of the same batch): "
                f"{n_lost:,} ({100 * n_lost / total:.2f}%)"
            )
        self.band_text.setText(
            f"<b>unscaled g</b>: flushed {share(bands_un, 'flushed')}, subnormal {share(bands_un, 'subnormal')},"
            f" overflow {share(bands_un, 'overflow')}, inf/NaN {share(bands_un, 'inf_nan')}<br>"
            f"<b style='color:{th.accent}'>scaled g × {_scale_text(r.scale)}</b>: flushed {share(bands_sc, 'flushed')},"
            f" subnormal {share(bands_sc, 'subnormal')}, overflow {share(bands_sc, 'overflow')},"
            f" inf/NaN {share(bands_sc, 'inf_nan')}{lost_text}"
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
            gone = u[:, BANDS.index("flushed")].astype(float)
            if params and x.param_lost is not None:  # flushed by g / S, or already zero in the fp16 backward
                gone = gone + x.param_lost
            flushed.append(gone / np.maximum(u.sum(1), 1))
        over_img = np.zeros((unscaled.shape[0], n), dtype=np.float32)
        flush_img = np.zeros_like(over_img)
        over_img[:, : len(upto)] = 100 * np.array(over).T
        flush_img[:, : len(upto)] = 100 * np.array(flushed).T
        for image, img, bar in ((self.over_image, over_img, self.colorbars[0]),
                                (self.flush_image, flush_img, self.colorbars[1])):  # fmt: skip
            image.setImage(np.ascontiguousarray(img), autoLevels=False)
            bar.setLevels((0.0, _nice_top(float(img.max()))))
        groups = self.meta.get("groups") or [str(i) for i in range(unscaled.shape[0])]
        self.meta.setdefault("groups", groups)
        self._thin_rows()
        for plot in (self.over_plot, self.flush_plot):
            plot.setXRange(0, n, padding=0)
            plot.setYRange(0, len(groups), padding=0)
            every = max(1, math.ceil(n / 12))  # step i is the cell [i, i + 1]: its label sits in the middle
            plot.getAxis("bottom").setTicks([[(i + 0.5, str(i)) for i in range(0, n, every)]])

        status = "overflow → step skipped" if r.skipped else ("overflow" if r.found_inf else "clean")
        event = {"growth": "grow ×2", "backoff": "back off ×½", "stop": "stopped"}.get(r.event or "", "")
        flushed_un = bands_un[BANDS.index("flushed")] / total
        flushed_sc = bands_sc[BANDS.index("flushed")] / total
        if lost is not None:
            gone = int(lost.sum()) / total
            loss_line = (
                f"lost to zero: {100 * (flushed_un + gone):.2f}% of parameter-gradient values without scaling, "
                f"{100 * (flushed_sc + gone):.2f}% with S = {_scale_text(r.scale)} (against an fp32 backward; "
                "Micikevicius et al.)"
            )
        else:
            loss_line = (
                f"flushed to zero: {100 * flushed_un:.2f}% of gradient values without scaling, "
                f"{100 * flushed_sc:.2f}% with it (Micikevicius et al.)"
            )
        s = self.meta.get("settings", {})
        first = f" · first overflow in <b>{r.first_overflow}</b>" if r.first_overflow else ""
        stopped = f"<br><b style='color:#e4572e'>{self.meta['stopped']}</b>" if self.meta.get("stopped") else ""
        self.header.setText(
            f"<b style='font-size:120%'>step {r.step + 1} of {len(self.records)}</b> &nbsp; {s.get('policy')} scaler,"
            f" {s.get('dtype')} autocast &nbsp; loss <b>{r.loss:.3f}</b>"
            f"{f' × {r.loss_factor:g} (spike)' if r.loss_factor != 1 else ''} &nbsp; scale 2^{np.log2(r.scale):.0f} →"
            f" 2^{np.log2(r.next_scale):.0f} &nbsp; <b>{status}</b> {event} &nbsp; growth tracker {r.growth_tracker}"
            f"{first}<br><span style='color:{th.muted}'>{loss_line}"
            f"{'' if self.deterministic else f' · {r.seconds:.2f} s'}</span>"
            f"{stopped}"
        )

    def _shown_record(self) -> StepRecord | None:
        return self.records[self.current] if 0 <= self.current < len(self.records) else None

    def _set_hist_title(self, r: StepRecord | None) -> None:
        """The histogram's legend lives in its title (a legend box inside the plot covered the bars), in the
        longest wording that fits the plot's width."""
        th = self.theme
        variants = [("log2 |gradient| against the FP16 range", "log2 |gradient| against the FP16 range")]
        if r is not None:
            ref = r.param_lost is not None and not self.grads.currentText().startswith("activation")
            variants = []
            for un, sc, fp in (("unscaled g", "scaled g × S", "fp32 reference"), ("g", "g × S", "fp32")):
                html = (
                    f"<span style='color:{th.bar}'>━ {un}</span> &nbsp;<span style='color:{th.accent}'>━ {sc}</span>"
                    + (f" &nbsp;<span style='color:{th.muted}'>┅ {fp}</span>" if ref else "")
                )
                variants.append((html, f"━ {un}  ━ {sc}" + (f"  ┅ {fp}" if ref else "")))
        fm = QFontMetrics(self._font)
        room = self.hist_plot.width() - 30
        title = next((h for h, plain in variants if fm.horizontalAdvance(plain) * 1.1 <= room), variants[-1][0])
        if title != getattr(self, "_hist_title", None):
            self._hist_title = title
            self.hist_plot.setProperty("title", title)
            self.hist_plot.setTitle(title, color=th.text)

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


def _pct(part: int, whole: int) -> str:
    p = 100 * part / max(whole, 1)
    return f"{p:.0f}%" if p >= 10 else f"{p:.1f}%" if p >= 0.1 else f"{p:.2f}%"


def _nice_top(x: float) -> float:
    """A colour-scale top that reads well (1, 2, 5 times a power of ten), at least 1%."""
    if x <= 1:
        return 1.0
    k = 10 ** math.floor(math.log10(x))
    return next(m * k for m in (1, 2, 5, 10) if x <= m * k)


def _scale_text(scale: float) -> str:
    """2^29 rather than 5.36871e+08: loss scales are powers of two in every policy but a static one."""
    k = math.log2(scale) if scale > 0 else math.nan
    return f"2^{k:.0f}" if math.isfinite(k) and k == round(k) else f"{scale:g}"
