"""The status bar: the loaded models on the left; the recording indicator and the device, dtype and attention
backend on the right."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QSizePolicy, QToolButton

from ...attention.backends import describe_backend
from ...models.checkpoint import default_dtype
from ..kit import ElidedLabel


class StatusBar:
    """Builds and updates the window's status bar (a MainWindow mixin: uses session and stop_recording)."""

    replaying: str | None = None  # the run file a window opened on (``explorer open``): it needs no model loaded

    def _build_status(self) -> None:
        self.status_models = ElidedLabel()
        self.status_device = ElidedLabel()  # takes its whole width when there is room, elides when there is not
        self.status_device.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.status_rec = QLabel()  # "● REC n/N" while a recording runs
        self.status_rec.setStyleSheet("color: #d62828; font-weight: bold")
        self.status_rec.setVisible(False)
        self.rec_stop = QToolButton()
        self.rec_stop.setText("■ Stop")
        self.rec_stop.setToolTip("Stop recording (the partial video is deleted)")
        self.rec_stop.setAutoRaise(True)
        self.rec_stop.clicked.connect(self.stop_recording)
        self.rec_stop.setVisible(False)
        self.statusBar().addWidget(self.status_models, 1)
        self.statusBar().addPermanentWidget(self.status_rec)
        self.statusBar().addPermanentWidget(self.rec_stop)
        self.statusBar().addPermanentWidget(self.status_device)
        self.statusBar().setSizeGripEnabled(False)
        self.status_device.setContentsMargins(0, 0, 10, 0)
        self.status_models.setContentsMargins(6, 0, 0, 0)

    def show_replaying(self, name: str) -> None:
        """This window replays the run file ``name`` (no model needed): the status bar says so."""
        self.replaying = name
        self._update_status()

    def _update_status(self) -> None:
        s = self.session
        if s.target is None:  # the panel names models all the same: say that Run loads them
            wanted = s.target_dir.name + (f" + {s.draft_dir.name}" if s.draft_dir else "")
            if self.replaying:  # a stored run replays without models: loading them is only for new runs
                self.status_models.setText(f"replaying {self.replaying} (no model needed; Run loads {wanted})")
            else:
                self.status_models.setText(f"no model loaded yet: Run loads {wanted}")
            device, dtype = s.device, s.dtype or str(default_dtype(s.device)).removeprefix("torch.")
        else:
            names = s.target.name + (f"  ·  draft {s.draft.name}" if s.draft else "")
            self.status_models.setText(f"target {names}")
            device, dtype = str(s.target.device), str(s.target.dtype).removeprefix("torch.")
        # the model's attention when it decodes; the attention view traces a kernel of its own and names it there
        text = f"device {device}  ·  {dtype}  ·  decoding attention {describe_backend(s.attention_backend, device)}"
        self.status_device.setText(text)
