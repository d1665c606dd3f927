"""View `ddp`: data-parallel training on real torch.distributed ranks — one bucket's ring all-reduce step by step
(the ring with its chunks moving, the ranks × chunks grid filling phase by phase), every rank's backward against
DDP's bucket all-reduces, the α–β cost model, and the checks against dist.all_reduce, DDP and one process. The
ranks run in child processes (explorer.distributed.job); the words are explorer.distributed.describe's. One
timeline step is one ring step."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QWidget

from ....distributed import describe
from ....distributed.job import DdpRunMeta
from ....distributed.options import VIEW as DDP_VIEW
from ....distributed.records import RingFrame
from ...kit import show_axes
from ...theme import Theme
from ..base import View
from .cost import CostPanel
from .grid import ChunkGrid
from .ring import RingPanel
from .timeline import RankTimeline


class DdpView(View):
    name = "ddp"
    title = "Data parallel"
    schema = DDP_VIEW
    meta: DdpRunMeta | None

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.header.setMinimumHeight(3 * self.header.fontMetrics().height())
        self.ring_panel = RingPanel(self, self.titles)
        self.chunk_grid = ChunkGrid(self, self.titles)
        self.rank_timeline = RankTimeline(self, self.titles)
        self.cost_panel = CostPanel(self, self.titles)
        self.lay_out_under_header(
            [[self.ring_panel.plot, self.chunk_grid.plot], [self.rank_timeline.plot, self.cost_panel.plot]], (3, 2)
        )
        self.finish_init()

    def panels(self):
        return self.ring_panel, self.chunk_grid, self.rank_timeline, self.cost_panel

    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return tuple(p.plot for p in self.panels())

    def set_theme(self, theme: Theme) -> None:
        for panel in self.panels():
            panel.set_theme(theme)
        super().set_theme(theme)

    def render(self, f: RingFrame | None) -> None:
        if f is None or self.meta is None:
            self.header.setText(f"<span style='color:{self.theme.muted}'>"
                                f"{self.empty_hint('train it on real ranks')}</span>")  # fmt: skip
            for panel in self.panels():
                panel.clear()
            for panel in (self.chunk_grid, self.rank_timeline, self.cost_panel):
                show_axes(panel.plot, False)
            return
        for panel in (self.chunk_grid, self.rank_timeline, self.cost_panel):
            show_axes(panel.plot, True)
        clock = not self.deterministic
        self.header.setText(describe.header_html(f, len(self.records), muted=self.theme.muted,
                                                 accent=self.theme.accent, seconds=clock))  # fmt: skip
        self.ring_panel.show(f)
        self.chunk_grid.show(f)
        cap_mb = self.meta.bucket_cap / 2**20
        self.rank_timeline.show(f.step, cap_mb, clock)
        bucket = next((b for b in f.step.buckets if b.index == f.step.ring_bucket), None)
        self.cost_panel.show(self.meta, f.step.ranks, bucket.bytes if bucket else 4.0 * f.step.ring_numel, clock)

    def caption_fields(self, f: RingFrame) -> dict:
        return describe.caption_fields(f)

    def export_data(self) -> dict:
        meta = self.meta.to_json() if self.meta is not None else {}
        steps, seen = [], set()
        for f in self.records:
            if f.step.step not in seen:
                seen.add(f.step.step)
                steps.append(f.step.to_json())
        return {"view": self.name, **meta, "steps": steps}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = ["timeline_step", "train_step", "phase", "ring_step", "rank", "sent_chunk", "sent_to",
                  "recv_chunk", "recv_from", "bytes_sent", "seconds"]  # fmt: skip
        rows = [[f.index + 1, f.step.step, f.phase, f.ring_step + 1, m["rank"], m["sent_chunk"], m["sent_to"],
                 m["recv_chunk"], m["recv_from"], m["bytes_sent"], m["seconds"]]
                for f in self.records for m in f.moves]  # fmt: skip
        return header, rows
