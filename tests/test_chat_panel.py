"""The prompt panel's chat toggle and system prompt reach the session: clicked and typed as a user would."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from explorer.models.checkpoint import default_model_dirs  # noqa: E402
from explorer.session import Session  # noqa: E402
from explorer.ui.window import MainWindow  # noqa: E402

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"


@pytest.fixture
def chat_model(tmp_path):
    """The demo target with a chat template added (its tokenizer has none)."""
    d = tmp_path / "chat-demo"
    shutil.copytree(default_model_dirs()["target"], d)
    (d / "chat_template.jinja").write_text(TEMPLATE)
    return d


def test_chat_toggle_and_system_prompt(qtbot, tmp_path, chat_model):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(Session(target_dir=chat_model, draft_dir=None, prompt="def f():"), settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert not win.chat_check.isChecked() and not win.system_edit.isEnabled()
    QTest.keyClick(win.chat_check, Qt.Key.Key_Space)  # the panel scrolls: the keyboard reaches it wherever it is
    assert win.chat_check.isChecked() and win.system_edit.isEnabled()
    qtbot.keyClicks(win.system_edit, "Be brief.")
    win.views["generate"].max_new.setValue(2)
    with qtbot.waitSignal(win.worker.finished, timeout=120000):
        QTest.mouseClick(win.run_button, Qt.MouseButton.LeftButton)  # loads the model, then runs
    if win.session.target is None or not win.views["generate"].records:
        with qtbot.waitSignal(win.worker.finished, timeout=120000):
            pass
    s = win.session
    assert s.chat and s.system == "Be brief."
    want = s.target.encode("<system>Be brief.<user>def f():<assistant>")
    assert s.prompt_ids() == want
    assert win.views["generate"].records[0].context_ids == want
    win.worker.cancel_and_wait()
