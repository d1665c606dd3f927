"""Running the active view: its job in the worker (or on this thread, headless), records streamed into the view
that asked for them, the player following the newest step unless the user has scrubbed back."""

from __future__ import annotations

from typing import Any

from ...attention.backends import use_backend
from ...models.progress import LoadNews
from .models import ModelsLoaded

# The setting that bounds how many records a view's run yields (amp: one per training step; generate: one per
# token, fewer when it stops at an end token): their progress bar fills; other runs show Qt's busy indicator.
EXPECTED_RECORDS = {"amp": "steps", "generate": "max_new"}


class ViewRuns:
    """The window's run commands and the worker's signals (a MainWindow mixin: uses session, worker, player,
    active_view, the panel's buttons and progress line, _live_render and the model-loading commands)."""

    def run_view(self) -> None:
        """Run the active view's computation on the loaded models (loading them first if needed)."""
        if self._refuse_while_busy():
            return
        self._sync_session_from_panel()
        if self.session.target is None or self._models_changed():
            self.load_models(then_run=True)
            return
        for lm in (self.session.target, self.session.draft):
            if lm is not None:
                use_backend(lm.model, self.session.attention_backend)  # switching backends needs no reload
        self._update_status()
        view = self.active_view
        try:
            job = view.make_job(self.session)
        except Exception as exc:  # noqa: BLE001 - e.g. prompt too long: shown, never raised
            self._show_error(str(exc))
            return
        view.clear()
        self.player.reset()
        self._job_view = view
        self.say(f"running {view.name}…", view)
        self.worker.start(job, stop=getattr(view.meta, "stop", None))  # a ddp run's ranks end at once
        total = view.job_values().get(EXPECTED_RECORDS.get(view.name, ""))
        if total:  # the bar fills as the steps come, instead of the full-looking busy stripes
            self.progress.setRange(0, total)
            self.progress.setValue(0)

    def run_view_blocking(self) -> None:
        """Run the active view's job on this thread, start to end (headless rendering; the GUI uses run_view)."""
        view = self.active_view
        self._update_status()
        view.clear()
        self.player.reset()
        self._job_view = view
        for record in view.make_job(self.session)():
            self._on_record(record)
        self._on_finished()  # as when a worker finishes: render the newest step now

    def say(self, text: str, view=None) -> None:
        """The progress line: ``text``, kept as ``view``'s latest word (None: the models') to be said again when
        its tab is shown, so that a tab never shows another tab's "done"."""
        self._words[view.name if view is not None else None] = text
        if view is None or view is self.active_view or self.worker.running:
            self.progress_label.setText(text)  # another tab's job while it runs: its progress is true now
        else:
            self._say_for_tab(self.active_view)

    def _say_for_tab(self, view) -> None:
        """The shown tab's latest word, or the models' (nothing of another tab's) unless a job is running."""
        if not self.worker.running:
            self.progress_label.setText(self._words.get(view.name) or self._words.get(None, ""))

    def _on_record(self, rec: Any) -> None:
        if isinstance(rec, ModelsLoaded):
            self._on_models_loaded(rec)
            return
        if isinstance(rec, LoadNews):
            self._on_load_news(rec)
            return
        view = self._job_view
        if view is None:
            return
        view.add_record(rec)
        if self.worker.running and self.progress.maximum() > 0:  # a run of known length (not headless ones)
            self.progress.setValue(min(len(view.records), self.progress.maximum()))
        if view is self.active_view:
            self.player.blockSignals(True)
            self.player.set_count(len(view.records))
            self.player.blockSignals(False)
        if len(view.records) == 1 and self.worker.running:
            self._render_live()  # a run's first step on screen at once; then at most 20 frames a second
        elif not self._live_render.isActive():
            self._live_render.start()

    def _render_live(self) -> None:
        view = self._job_view
        if view is None:
            return
        if view is self.active_view:
            with self.worker.gate:  # the job waits while this frame is drawn
                view.show_step(self.player.step)
                view.repaint()
        self.say(f"{view.name}: {len(view.records)} steps", view)

    def _on_finished(self) -> None:
        if self._live_render.isActive():
            self._live_render.stop()
        if self._job_view is not None and self._job_view is self.active_view:
            self.active_view.show_step(self.player.step)  # the final state, without waiting for the timer
        if self.worker.cancelled:
            self._pending_run = False
            if self._job_view is None:
                self._set_loading(None)
                self._restore_model_fields()
                self.say("loading cancelled")
                self._update_status()  # not "loading …" any more
            else:
                n = len(self._job_view.records)
                self.say(f"{self._job_view.name}: cancelled after {n} step{'s' * (n != 1)}", self._job_view)
        elif self._job_view is None:
            self._set_loading(None)
            self.say("models loaded")
            if self._pending_run:
                self._pending_run = False
                self.run_view()
        else:
            view = self._job_view
            if view is self.active_view and self.player.follow and view.records:
                self.player.go(view.landing_step())  # e.g. the last step that drafted, not an empty last one
            self.say(f"{view.name}: done, {len(view.records)} steps", view)

    def _on_failed(self, message: str) -> None:
        self._pending_run = False
        if self._job_view is None:
            self._set_loading(None)
            self._restore_model_fields()
            self.say(f"loading failed: {message}")
        else:
            n = len(self._job_view.records)
            self.say(f"{self._job_view.name}: failed after {n} step{'s' * (n != 1)}: {message}", self._job_view)
        self._update_status()
        self._show_error(message)

    def _on_busy(self, busy: bool) -> None:
        self.progress.setRange(0, 0 if busy else 1)
        self.cancel_button.setEnabled(busy)
        self.run_button.setEnabled(not busy)
        self.load_button.setEnabled(not busy)
        self.run_action.setEnabled(not busy)
