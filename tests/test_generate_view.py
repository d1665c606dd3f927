"""The generate view's runner and words (Qt-free): what a decoding run records and how each step is described."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.models import describe
from explorer.models.generate import GenerateRecord, generate
from explorer.models.job import SHOW_TOP, generation_job
from explorer.session import Session


def record(**kw) -> GenerateRecord:
    base = dict(step=2, context_ids=[1, 2, 3, 4], n_prompt=2, token_id=7, token_text="\n", top_ids=np.array([7, 9]),
                top_probs=np.array([0.9, 0.05], np.float32), top_texts=["\n", "x"], chosen_prob=0.9, chosen_rank=0,
                entropy_bits=0.61, temperature=0.0, top_k=None, seconds=0.0123)  # fmt: skip
    return GenerateRecord(**{**base, **kw})


@pytest.fixture(scope="module")
def session():
    s = Session(draft_dir=None)
    s.load()
    return s


def test_generation_job_records_the_greedy_decode(session):
    job = generation_job(session, {"max_new": 4, "temperature": 0.0, "top_k": 0, "seed": 0})
    meta = job.meta
    assert meta.top_k is None and meta.prompt == session.prompt and meta.prompt_ids == session.prompt_ids()
    exported = meta.to_json()
    assert list(exported) == ["model", "prompt", "prompt_ids", "temperature", "top_k", "seed", "device", "dtype"]
    json.dumps(exported)  # decode is not part of it
    records = list(job.records())
    assert [r.token_id for r in records] == generate(session.target, meta.prompt_ids, 4, 0.0, None, 0)
    assert all(len(r.top_ids) == SHOW_TOP for r in records)
    assert meta.decode(records[-1].context_ids) == session.target.decode(records[-1].context_ids)


def test_generation_job_takes_the_schemas_defaults(session):
    job = generation_job(session, {"max_new": 2})
    assert job.meta.temperature == 0.0 and job.meta.seed == 0 and len(list(job.records())) == 2


def test_header_and_mode():
    r = record()
    header = describe.header_html(r, 5, accent="#f00", muted="#777", seconds=True)
    assert "step 3 of 5" in header and "(id 7)" in header and "p = <b>0.900</b>" in header and "rank 1" in header
    assert "entropy <b>0.61</b> bits" in header and "greedy" in header and "12.3 ms" in header
    assert "ms" not in describe.header_html(r, 5, accent="#f00", muted="#777", seconds=False)
    assert describe.mode_text(record(temperature=0.8, top_k=40)) == "T = 0.8, top-k 40"
    assert describe.mode_text(record(temperature=0.7)) == "T = 0.7"


def test_text_marks_the_token():
    html = describe.text_html("def f(", "x<y", "\n", muted="#777", text="#000", highlight_bg="#ff0")
    assert "<span style='color:#777'>def f(</span>" in html and "x&lt;y" in html
    assert "font-weight:bold'>⏎\n</span>" in html  # a line break shows where it is
    assert "bold'>ab</span>" in describe.text_html("", "", "ab", muted="", text="", highlight_bg="")


def test_bar_labels_trend_title_and_captions():
    assert describe.bar_label(0.9) == ("0.900", True) and describe.bar_label(0.05) == ("0.050", False)
    assert "entropy, bits" in describe.trend_title("#00f", "#f00") and "#f00'>━ p(chosen)" in describe.trend_title(
        "#00f", "#f00")  # fmt: skip
    fields = describe.caption_fields(record())
    assert fields == {"token": "⏎", "p": 0.9, "rank": 1, "entropy": 0.61}


def test_view_counts_steps_from_one_everywhere(qtbot):
    """Issue 23: one numbering in the generate view — the header's "step k of n", the player, the trend's marker
    and last point, and the `step` of the JSON and CSV exports — for the first step and the last (by keys)."""
    pytest.importorskip("PySide6")
    from PySide6.QtCore import Qt

    from explorer.session import Session
    from explorer.ui.app import render_view

    win = render_view(Session(draft_dir=None), "generate", (1280, 720), settings={"max_new": 5})
    view = win.views["generate"]
    try:
        win.show()
        win.activateWindow()
        qtbot.waitExposed(win)
        n = len(view.records)
        assert n == 5
        for key, k in ((Qt.Key.Key_Home, 1), (Qt.Key.Key_End, n)):
            qtbot.keyClick(win, key)
            assert f"step {k} of {n}" in view.header.text() and win.player.label.text() == f"step {k} / {n}"
            assert view.trend.step_line.value() == k
            assert view.trend.entropy_curve.getData()[0][-1] == k
        assert [s["step"] for s in view.export_data()["steps"]] == list(range(1, n + 1))
        assert [row[0] for row in view.export_rows()[1]] == list(range(1, n + 1))
    finally:
        win.close()
        win.deleteLater()
