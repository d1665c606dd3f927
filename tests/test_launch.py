"""The launch's shortcuts (issue 23.18), each keeping what the user sees: only the first tab's view is built with
the window (the others on first use, the panel as wide as with all built), the models start loading before the
window is built and its load follows that load, and a run's first step is drawn as soon as it arrives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from explorer.models.progress import Loading  # noqa: E402
from explorer.session import Session  # noqa: E402
from explorer.ui.views import VIEW_ENTRIES, VIEWS, view_schema  # noqa: E402
from explorer.ui.window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(Session(), settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    win.resize(1280, 720)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.worker.cancel_and_wait()
    win.close()
    win.deleteLater()


def built(win) -> list[str]:
    return [n for n in win.views if win.views.is_built(n)]


def click_tab(qtbot, win, name: str) -> None:
    qtbot.mouseClick(win.tabs, Qt.MouseButton.LeftButton, pos=win.tabs.tabRect(list(win.views).index(name)).center())


def test_only_the_first_view_is_built_and_a_tab_builds_its_own_in_place(qtbot, window):
    assert built(window) == ["generate"]
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == [e.title for e in VIEW_ENTRIES.values()]
    assert list(window.views) == list(VIEWS) and len(window.views) == len(VIEWS)
    click_tab(qtbot, window, "amp")
    assert built(window) == ["generate", "amp"]
    amp = window.views["amp"]
    index = list(VIEWS).index("amp")
    assert window.active_view is amp and window.stack.currentWidget() is amp and window.stack.widget(index) is amp
    assert window.settings_stack.currentWidget() is amp.settings_widget()
    assert window.stack.count() == window.settings_stack.count() == len(VIEWS)
    assert amp.isVisible() and not window.views["generate"].isVisible()
    # asked for by name (scripts, tests, File › Open run): built where it belongs, the shown tab unchanged
    spec = window.views["speculative"]
    assert window.stack.widget(list(VIEWS).index("speculative")) is spec and window.active_view is amp
    assert window.views["speculative"] is spec  # built once
    with pytest.raises(KeyError):
        window.views["nothing"]


def test_each_view_is_registered_as_its_class_says():
    """The registry's titles and schemas (the tabs and stand-in pages, no view imported) are the classes' own."""
    assert list(VIEWS) == list(VIEW_ENTRIES) and "amp" in VIEWS and "nothing" not in VIEWS
    for name, entry in VIEW_ENTRIES.items():
        cls = VIEWS[name]
        assert (cls.name, cls.title, cls.uses_draft) == (name, entry.title, entry.uses_draft)
        assert cls.schema is view_schema(name)
    assert view_schema("promptset").options["max_new"].default == 64 != view_schema("speculative").options["max_new"]
    with pytest.raises(KeyError):
        VIEWS["nothing"]


def test_the_window_imports_only_its_first_view_and_not_triton(tmp_path):
    """Building the window imports the first tab's view module alone (the others' modules, their plots and engines,
    on first showing) and not triton (imported when the Triton kernel first runs), though the panel lists it."""
    code = (
        "import importlib.util, json, sys\n"
        "from explorer.ui.app import ensure_app\n"
        "from explorer.session import Session\n"
        "ensure_app(offscreen=True)\n"
        "from explorer.ui.window import MainWindow\n"
        "win = MainWindow(Session())\n"
        "views = sorted({m.split('.')[3] for m in sys.modules if m.startswith('explorer.ui.views.')})\n"
        "listed = [win.attention_combo.itemText(i) for i in range(win.attention_combo.count())]\n"
        "print(json.dumps([views, 'triton' in sys.modules, listed, importlib.util.find_spec('triton') is not None]))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    views, triton_imported, listed, triton_installed = json.loads(out.stdout.splitlines()[-1])
    assert views == ["base", "controls", "generate"] and not triton_imported
    assert ("triton" in listed) == triton_installed and listed[0] == "sdpa"


def test_triton_is_imported_when_the_triton_backend_is_first_chosen():
    """The model's backends are listed without importing triton; choosing the Triton one imports it (and refuses it
    where triton does not import); the kernel reaches the module as before (benchmarks/gpu_check.py)."""
    code = (
        "import importlib.util, sys, types\n"
        "from explorer.attention.backends import BACKENDS, available_backends, use_backend\n"
        "import explorer.session\n"
        "assert 'triton' not in sys.modules and 'explorer.kernels.flash_triton' not in sys.modules\n"
        "assert ('triton' in available_backends()) == (importlib.util.find_spec('triton') is not None)\n"
        "assert 'triton' not in sys.modules\n"
        "model = types.SimpleNamespace(attention=None)\n"
        "use_backend(model, 'sdpa')\n"
        "assert 'triton' not in sys.modules\n"
        "if 'triton' in available_backends():\n"
        "    use_backend(model, 'triton')\n"
        "    fa = sys.modules['explorer.kernels.flash_attention']  # the package re-exports a function of that name\n"
        "    assert model.attention is BACKENDS['triton'] and fa.triton is sys.modules['triton']\n"
        "    kernels = sys.modules['explorer.kernels.flash_triton']\n"
        "    assert fa._flash_fwd is kernels._flash_fwd and fa.runs_interpreted()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_panel_is_as_wide_before_the_views_are_built_as_after(qtbot, window):
    """The stand-in pages (each view's schema controls) hold the panel's width: amp's settings, the widest, set it
    before the amp view exists, so that nothing moves when a tab is first shown."""
    QApplication.processEvents()
    width, dock = window.panel_scroll.minimumWidth(), window.dock.width()
    stack = window.settings_stack.minimumSizeHint()
    assert built(window) == ["generate"]
    list(window.views.values())  # every view built
    window._fit_panel()
    QApplication.processEvents()
    assert window.panel_scroll.minimumWidth() == width and window.dock.width() == dock
    assert window.settings_stack.minimumSizeHint().width() == stack.width()


def test_a_view_built_later_takes_the_windows_theme_text_size_and_models(qtbot, window):
    window.set_theme("dark")
    window.zoom(1.15)
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
    click_tab(qtbot, window, "speculative")
    spec = window.views["speculative"]
    assert spec.theme.name == "dark" and spec.models_loaded and spec.loading is None
    assert "Press Run to speculate" in spec.header.text()
    font = QApplication.font()
    assert spec.themed_plots() and all(
        p.getAxis("left").style["tickFont"].pointSizeF() == font.pointSizeF() for p in spec.themed_plots()
    )
    # the prompt set's replay inside it is told too
    click_tab(qtbot, window, "promptset")
    assert "load a model" not in window.views["promptset"].replay.header.text().lower()


def test_a_view_built_while_models_load_says_they_load(qtbot, window):
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
        click_tab(qtbot, window, "attention")
        assert window.views["attention"].loading == "demo-target + demo-draft"
    assert window.views["attention"].models_loaded and window.views["attention"].loading is None


def test_the_windows_load_follows_the_load_the_launch_started(qtbot, window):
    """explorer.ui.app.run_gui starts loading before the window is built; the window's load takes that load's result
    when its panel asks for the same models, and loads itself when it asks for others."""
    calls = []
    wanted = replace(window.session, target=None, draft=None)

    def load():
        calls.append(1)
        return wanted.load_pair()

    started = (wanted, Loading(load))
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models(started=started)
    assert calls == [1] and window.session.target is not None and window.session.draft is not None
    loaded = window.session.target
    other = (replace(wanted, dtype="bfloat16"), Loading(lambda: (loaded, None)))  # not what the panel names
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models(started=other)
    assert window.session.target is not loaded and str(window.session.target.dtype) == "torch.float32"
    assert window.session.draft is not None


def test_a_runs_first_step_is_drawn_as_it_arrives(qtbot, window):
    """Not 50 ms later with the live frames that follow: the launch's first decoded step is on screen at once."""
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.load_models()
    view = window.views["generate"]
    view.max_new.setValue(4)
    shown = []
    window.worker.record.connect(lambda _: shown.append((view.current, view.header.text())))  # after the window's
    with qtbot.waitSignal(window.worker.finished, timeout=60000):
        window.run_view()
    current, header = shown[0]
    assert current == 0 and "step 1 of 1" in header


def test_following_a_load_late_relays_only_its_newest_news():
    """The launch's load often ends before the window follows it: the window hears its result, not the backlog."""
    import threading

    from explorer.models.progress import LoadNews, report

    gate = threading.Event()

    def load():
        for i in range(100):
            report("counting", i + 1, 200)
        gate.wait(10)  # the follower has caught up: the rest comes live
        for i in range(100, 200):
            report("counting", i + 1, 200)
        return "done"

    loading = Loading(load)
    while loading._news.qsize() < 100:
        threading.Event().wait(0.001)
    news = loading.follow(steps=200, catch_up=True)
    assert next(news) == LoadNews("counting", 100, 200)  # the backlog's newest, alone
    gate.set()
    rest = []
    try:
        while True:
            rest.append(next(news))
    except StopIteration as stop:
        assert stop.value == "done"
    assert [n.done for n in rest] == list(range(101, 201))  # then every one as it comes

    ended = Loading(lambda: (report("counting", 1, 1), "done")[1])
    while ended._news.qsize() < 2:
        threading.Event().wait(0.001)
    follow = ended.follow(catch_up=True)
    with pytest.raises(StopIteration) as stop:
        next(follow)
    assert stop.value.value == "done"  # an ended load: no news at all, its result at once


def test_plain_imports_swaps_pysides_import_hook_for_the_block_only():
    """The launch imports torch with Python's own import, not PySide6's hook (which reads each new module's source);
    the hook is back after the block, also when an import in it fails."""
    import builtins

    from explorer.cli.gui import plain_imports

    hook = builtins.__import__
    seen = []

    def plain(name, *args, **kwargs):
        seen.append(name)
        return hook(name, *args, **kwargs)

    with plain_imports(plain):
        import json  # noqa: F401

        assert builtins.__import__ is plain
    assert builtins.__import__ is hook and "json" in seen
    with pytest.raises(ImportError), plain_imports(plain):
        import explorer.no_such_module  # noqa: F401
    assert builtins.__import__ is hook
