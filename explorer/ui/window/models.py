"""Loading models in the worker (the GUI keeps running), the recent-models menu, and whether the panel names other
models than those loaded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from ...models.checkpoint import default_dtype
from ...models.progress import Loading, LoadNews, load_with_news
from ...session import Session
from ..views.base import View

MAX_RECENT = 8


class ModelsLoaded:
    """What the loading job yields: the loaded pair (plain data, handed to the GUI thread)."""

    def __init__(self, target, draft):
        self.target, self.draft = target, draft


class ModelLoading:
    """The window's model commands (a MainWindow mixin: uses session, settings, worker, the panel's model fields,
    recent_menu, views and progress_label)."""

    def open_model_dialog(self, role: str) -> None:
        start = self.target_edit.text() if role == "target" else self.draft_edit.text()
        path = QFileDialog.getExistingDirectory(self, f"Open {role} model directory", start)
        if path:
            (self.target_edit if role == "target" else self.draft_edit).setText(path)
            self.load_models()

    def _refuse_while_busy(self) -> bool:
        """Run and load wait for the running job: say so instead of blocking the window on it."""
        if self.worker.running:
            self.statusBar().showMessage("a job is running: Cancel (Esc) it first", 4000)
            return True
        return False

    def load_models(self, then_run: bool = False, started: tuple[Session, Loading] | None = None) -> None:
        """Load target (and draft) in the worker; the GUI keeps running. Optionally run the view afterwards.
        ``started``: a load already under way (the launch starts the models' while the window is built) and the
        session it loads, followed instead of starting another when the panel asks for the same."""
        if self._refuse_while_busy():
            return
        self._sync_session_from_panel()
        wanted = replace(self.session, target=None, draft=None)  # a snapshot: the panel may change meanwhile
        loading = started[1] if started is not None and started[0] == wanted else None

        def job():
            news = loading.follow(catch_up=True) if loading is not None else load_with_news(wanted.load_pair)
            pair = yield from news  # LoadNews records while it loads (GGUF: seconds)
            yield ModelsLoaded(*pair)

        self._pending_run = then_run
        self._job_view = None
        self._loading_fields = self._model_fields()
        target_dir, draft_dir = wanted.target_dir, wanted.draft_dir
        names = target_dir.name + (f" + {draft_dir.name}" if draft_dir else "")
        self.say(f"loading {names}…")
        self.worker.start(job)
        self._set_loading(names)
        self.status_models.setText(f"loading {names}…")  # until it has loaded (or failed: the status is redone)

    def all_views(self) -> list:
        """The views built so far and the views inside them (the prompt set's replay): each says what is true of
        the models (a view built later is told as it is built)."""
        return [w for view in self.views.built() for w in (view, *view.findChildren(View))]

    def _on_load_news(self, news: LoadNews) -> None:
        """The progress line and bar follow the load: "loading 136/272: dequantizing tensors of SmolLM2….gguf"
        (the counts first: the panel's line elides its end)."""
        self.say(f"loading {news.done}/{news.total}: {news.stage}")
        self.progress.setRange(0, news.total)
        self.progress.setValue(news.done)

    def _set_loading(self, names: str | None) -> None:
        """Empty views say "Loading <names>…" while models load (``names``), and what they said before after."""
        self._loading_names = names
        for view in self.all_views():
            view.loading = names
        self._stale_empty |= {v for v in self.views.built() if not v.records}
        self._refresh_if_stale(self.active_view)  # the others when they are shown

    def _on_models_loaded(self, loaded: ModelsLoaded) -> None:
        self.session.target, self.session.draft = loaded.target, loaded.draft
        self._loaded_fields = self._loading_fields
        self._remember(loaded.target.path)
        self._update_status()
        self._loading_names, self._models_told = None, True
        for view in self.all_views():
            view.models_loaded, view.loading = True, None  # an empty view now says "press Run", not "load a model"...
            view.models_ready(self.session)  # ...and offers what these models can run
        self._stale_empty |= {v for v in self.views.built() if not v.records}
        self._refresh_if_stale(self.active_view)  # ...the others when they are shown (each costs a render)

    def _refresh_if_stale(self, view) -> None:
        if view in self._stale_empty:
            self._stale_empty.discard(view)
            for v in (view, *view.findChildren(View)):
                if not v.records:
                    v.show_step(-1)

    def _models_changed(self) -> bool:
        s = self.session
        loaded_dtype = str(s.target.dtype).removeprefix("torch.")
        want_dtype = s.dtype or str(default_dtype(s.device)).removeprefix("torch.")
        draft_path = s.draft.path if s.draft is not None else None
        return (
            s.target.path != s.target_dir
            or draft_path != s.draft_dir
            or s.target.device.type != s.device
            or loaded_dtype != want_dtype
        )

    def _remember(self, path: Path) -> None:
        recent = [p for p in (self.settings.value("recent_models") or []) if p != str(path)]
        recent.insert(0, str(path))
        self.settings.setValue("recent_models", recent[:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("recent_models") or []
        if isinstance(recent, str):
            recent = [recent]
        for p in recent:
            self.recent_menu.addAction(p, lambda p=p: (self.target_edit.setText(p), self.load_models()))
        self.recent_menu.setEnabled(bool(recent))
