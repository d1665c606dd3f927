"""The window's views, each built the first time it is needed (its tab shown, or asked for by name): building all
seven up front cost about half a second of the launch (some thirty pyqtgraph plots), before the first view could
show anything. Until a view is built, its settings page is stood in for by a page of its schema's controls, so that
the panel is laid out as wide as with every page built."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from PySide6.QtWidgets import QFormLayout, QWidget

from ...options import Schema
from ..views.base import View
from ..views.controls import control


class LazyViews(Mapping[str, View]):
    """The views by name, in the tabs' order. ``views[name]`` builds a view not built yet (with ``build``);
    iterating gives the names without building; ``built()`` the views built so far."""

    def __init__(self, names: Iterable[str], build: Callable[[str], View]):
        self.names = list(names)
        self._build = build
        self._built: dict[str, View] = {}
        self._building: set[str] = set()

    def __getitem__(self, name: str) -> View:
        if name not in self._built:
            if name not in self.names:
                raise KeyError(name)
            if name in self._building:
                raise RuntimeError(f"the {name} view was asked for while it was being built")
            self._building.add(name)
            try:
                self._built[name] = self._build(name)
            finally:
                self._building.discard(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names  # without building it

    def is_built(self, name: str) -> bool:
        return name in self._built

    def built(self) -> list[View]:
        """The views built so far, in the tabs' order (the window's theme, text size and model news reach only
        these; a view built later takes them as it is built)."""
        return [self._built[n] for n in self.names if n in self._built]


def stand_in_page(schema: Schema) -> QWidget:
    """A page laid out as the settings page of a view of ``schema`` is (the base View's rows: one control per panel
    option), holding the panel's size until the view is built. Never shown: the shown tab's view is built."""
    page = QWidget()
    options = schema.panel()
    if options:
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        for option in options:
            form.addRow("" if option.kind is bool else option.label, control(option))
    return page
