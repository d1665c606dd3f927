"""Recording: deterministic frames, MP4 / GIF / PNG output, tours (format, errors, shipped ones), the GUI's Record."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer.errors import ExplorerError
from explorer.recording.tour import load_tour, locate, parse_tour, plan_shots, single_view_tour

ROOT = Path(__file__).resolve().parent.parent
TOURS = sorted((ROOT / "assets" / "tours").glob("*.toml"))
SMALL = (320, 240)


def hashes(directory: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("frame_*.png"))]


# ------------------------------------------------------------------------------ the tour format (Qt-free)
BAD_TOURS = [
    ('title = "x"\n[[scene]]\nview "speculative"\n', 3, "invalid TOML"),
    ('title = "x"\n[[scene]]\nview = "speculative"\nsteps = [1, 3\n', 4, "invalid TOML"),
    ('title = "x"\n\n[[scene]]\nview = "speculatve"\n', 4, "unknown view 'speculatve'"),
    ('[[scene]]\nview = "amp"\ncaptoin = "hi"\n', 3, "unknown key 'captoin'"),
    ('[[scene]]\ncard = "Hello"\n\n[[scene]]\nview = "amp"\nseconds_per_step = "slow"\n', 6, "must be a number"),
    ('[[scene]]\nview = "attention"\ntarget = "nowhere"\n', 3, "model directory not found"),
    ('[[scene]]\nview = "amp"\nsteps = [5, 2]\n', 3, "first <= last"),
    ('[[scene]]\nview = "amp"\nsteps = [1, 4]\n\n[[scene.at]]\nstep = 9\ncaption = "x"\n', 6, "outside"),
    ('[[scene]]\nview = "amp"\n\n[[scene.at]]\ncaption = "no step"\n', 4, "needs step"),
    ('fps = 0\n[[scene]]\nview = "amp"\n', 1, "fps must be above 0"),
    ('size = "1281x720"\n[[scene]]\nview = "amp"\n', 1, "must be even"),
    ('[[scene]]\nsubtitle = "neither"\n', 1, "needs view"),
    ('title = "only a title"\n', None, "no scenes"),
]


@pytest.mark.parametrize("text, line, message", BAD_TOURS)
def test_malformed_tours_are_refused_with_their_line(text, line, message):
    with pytest.raises(ExplorerError) as info:
        parse_tour(text, name="bad.toml", base=ROOT)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith(f"bad.toml, line {line}:" if line else "bad.toml:"), text


def test_locate_finds_keys_in_tables_arrays_and_inline_tables():
    src = (
        'title = "t"\n'
        "[[scene]]\n"
        'card = "a"\n'
        "[[scene]]\n"
        'view = "speculative"\n'
        'settings = { method = "chain",\n  gamma = 4 }\n'
        '[[scene.at]]\nstep = 1\n[[scene.at]]\nstep = 3\ncaption = """two\nlines"""\nselect = 2\n'
    )
    assert locate(src, ("scene", 0, "card")) == 3
    assert locate(src, ("scene", 1)) == 4
    assert locate(src, ("scene", 1, "settings", "gamma")) == 7
    assert locate(src, ("scene", 1, "at", 1, "step")) == 11
    assert locate(src, ("scene", 1, "at", 1, "select")) == 14


def test_plan_holds_each_step_a_whole_number_of_frames():
    tour = parse_tour(
        '[[scene]]\ncard = "T"\nseconds = 2\n\n[[scene]]\nview = "amp"\nsteps = [2, 4]\nseconds_per_step = 0.5\n'
        'hold = 1\ncaption = "a"\n\n[[scene.at]]\nstep = 3\ncaption = "b"\npause = 1\n'
        'settings = { grads = "activation gradients" }\n',
        base=ROOT,
    )
    shots = plan_shots(tour, 10, {1: 6})
    assert [(s.step, s.frames, s.caption) for s in shots] == [(None, 20, ""), (1, 5, "a"), (2, 15, "b"), (3, 15, "b")]
    assert shots[3].display == {"grads": "activation gradients"} and shots[3].first_frame == 40
    with pytest.raises(ExplorerError, match="line 7: .*computed 3"):
        plan_shots(tour, 10, {1: 3})


# ------------------------------------------------------------------------------------------ recording
pytest.importorskip("PySide6")
pytest.importorskip("av")


def record_view(view, steps, out, **kw):
    from explorer.ui.recorder import record

    return record(single_view_tour(view, steps, kw.pop("seconds_per_step", 1.0)), out, **kw)


def test_speculative_recording_is_byte_identical_across_runs_and_processes(qtbot, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    stats = record_view("speculative", 6, a, size=SMALL, fps=2)
    record_view("speculative", 6, b, size=SMALL, fps=2)
    assert stats.frames == 12 and stats.shots == 6
    first = hashes(a)
    assert len(first) == 12 and len(set(first)) == 6  # each step held for 2 frames, each step differs
    assert first == hashes(b)
    from PIL import Image

    assert Image.open(a / "frame_00000.png").size == SMALL
    args = ["record", "--view", "speculative", "--steps", "6", "--out", str(c), "--fps", "2", "--size", "320x240"]
    r = subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert hashes(c) == first  # another process, the same bytes


def test_mp4_decodes_with_the_expected_frames_and_size(qtbot, tmp_path):
    import av

    out = tmp_path / "spec.mp4"
    stats = record_view("speculative", 3, out, size=SMALL, fps=4)
    assert stats.frames == 12
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = list(container.decode(stream))
    assert len(frames) == 12
    assert {(f.width, f.height) for f in frames} == {SMALL}
    assert abs(float(frames[-1].time) - 11 / 4) < 1e-6  # time advances 1/fps per frame


def test_gif_loops_and_holds_each_step(qtbot, tmp_path):
    from PIL import Image

    out = tmp_path / "spec.gif"
    record_view("speculative", 3, out, size=SMALL, fps=8, seconds_per_step=0.5, theme="dark")
    with Image.open(out) as gif:
        assert gif.info["loop"] == 0 and gif.size == SMALL
        assert gif.n_frames == 3  # one GIF frame per step, held for its duration
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations == [500, 500, 500]


def test_recording_hides_wall_clock_numbers(qtbot):
    from explorer.session import Session
    from explorer.ui.app import render_view

    win = render_view(Session(), "speculative", (1280, 720), settings={"max_new": 12})
    try:
        view = win.views["speculative"]
        assert "tok/s" in view.header.text() and " ms" in view.header.text()
        view.deterministic = True
        view.show_step(view.current)
        assert "tok/s" not in view.header.text() and " ms" not in view.header.text()
        assert "timings omitted in recordings" in view.header.text()
    finally:
        win.close()
        win.deleteLater()


def test_settings_select_and_zoom_are_checked_against_the_views(qtbot):
    from explorer.ui.recorder import Recorder

    cases = [
        ('[[scene]]\nview = "speculative"\nsettings = { gama = 4 }\n', 3, "has no setting 'gama'"),
        ('[[scene]]\nview = "speculative"\nsettings = { gamma = "four" }\n', 3, "must be an integer"),
        ('[[scene]]\nview = "speculative"\nsettings = { method = "beam" }\n', 3, "must be one of"),
        ('[[scene]]\nview = "attention"\n\nsettings = { block_m = 48 }\n', 4, "power of two"),
        ('[[scene]]\nview = "amp"\nsettings = { steps = 9000 }\n', 3, "steps must be an integer in 1..2000 (got 9000)"),
        ('[[scene]]\nview = "amp"\n\n[[scene.at]]\nstep = 2\nsettings = { policy = "none" }\n', 6, "display settings"),
        ('[[scene]]\nview = "generate"\nselect = 2\n', 3, "does not support select"),
        ('[[scene]]\nview = "speculative"\nzoom = "tile"\n', 3, "does not support zoom"),
    ]
    for text, line, message in cases:
        with pytest.raises(ExplorerError) as info:  # settings: when the tour is read; focus: before any model
            Recorder(parse_tour(text, name="bad.toml", base=ROOT), SMALL, 10).check()
        assert str(info.value).startswith(f"bad.toml, line {line}:") and message in str(info.value), str(info.value)


@pytest.mark.parametrize("path", TOURS, ids=[p.stem for p in TOURS])
def test_shipped_tours_parse_and_check(qtbot, path):
    from explorer.ui.recorder import Recorder

    tour = load_tour(path)
    assert tour.title and tour.scenes[0].kind == "card" and any(s.kind == "view" for s in tour.scenes)
    Recorder(tour, tour.size, tour.fps).check()
    # at most a minute of video: cards, steps, pauses and holds (steps="all" counted from the settings' sizes)
    seconds = 0.0
    for s in tour.scenes:
        if s.kind == "card":
            seconds += s.seconds
        else:
            known = {"attention": 10, "amp": s.settings.get("steps")}  # 4 x 4 causal tiles; the training steps
            first, last = s.steps if isinstance(s.steps, tuple) else (1, known[s.view])
            seconds += (last - first + 1) * s.seconds_per_step + s.hold + sum(e.pause for e in s.events)
    assert seconds <= 60, seconds


def test_a_short_tour_renders_with_cards_captions_and_focus(qtbot, tmp_path):
    from PIL import Image

    from explorer.ui.recorder import record

    text = (
        'title = "t"\nseed = 3\n[[scene]]\ncard = "Title"\nsubtitle = "sub"\nseconds = 1\n\n'
        # a fixed shape: an auto one may draft nothing at step 2 (the chooser's honest choice), and node 0 is selected
        '[[scene]]\nview = "speculative"\nsettings = { max_new = 12, method = "chain", gamma = 3 }\n'
        'steps = 2\nseconds_per_step = 0.5\n'
        'caption = "step {step}: {accepted} of {drafted}, alpha {alpha:.2f}"\n\n'
        "[[scene.at]]\nstep = 2\nselect = 0\npause = 0.5\n"
    )
    tour = parse_tour(text, name="t.toml", base=ROOT)
    stats = record(tour, tmp_path / "t.gif", size=SMALL, fps=4)
    assert stats.frames == 4 + 2 + 4
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 3 and gif.info["loop"] == 0
    bad = parse_tour(text.replace("{alpha:.2f}", "{beta}"), name="t.toml", base=ROOT)
    with pytest.raises(ExplorerError, match=r"t.toml, line 13: caption names \{beta\}"):
        record(bad, tmp_path / "bad.gif", size=SMALL, fps=4)
    assert not (tmp_path / "bad.gif").exists()


def test_cli_refuses_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[scene]]\nview = "speculative"\nsettings = { gama = 4 }\n')
    cases = [
        ([str(bad), "--out", str(tmp_path / "x.mp4")], "bad.toml, line 3: the speculative view has no setting 'gama'"),
        (["--view", "speculative", "--out", str(tmp_path / "x.mov")], "give FILE.mp4, FILE.gif or a directory"),
        (["--view", "amp", "--out", str(tmp_path / "x.mp4"), "--size", "321x240"], "must be even"),
        ([str(tmp_path / "none.toml"), "--out", str(tmp_path / "x.mp4")], "tour file not found"),
    ]
    for args, message in cases:
        r = subprocess.run(
            [sys.executable, "-m", "explorer", "record", *args], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_gui_records_without_blocking_and_can_be_cancelled(qtbot, tmp_path):
    from PIL import Image
    from PySide6.QtCore import QTimer

    from explorer.session import Session
    from explorer.ui.app import render_view

    win = render_view(Session(), "generate", (1280, 800), settings={"max_new": 8})
    try:
        win.player.go(1)
        out = tmp_path / "gen.gif"
        beats: list[float] = []
        timer = QTimer(win)
        timer.setInterval(5)
        timer.timeout.connect(lambda: beats.append(time.perf_counter()))
        timer.start()
        rec = win.start_recording(out, size=(1280, 720), fps=10, seconds_per_step=0.5, from_current=True)
        assert win.status_rec.isVisible() and win.status_rec.text().startswith("● REC 0/")
        with qtbot.waitSignal(rec.finished, timeout=60000):
            pass
        timer.stop()
        assert not win.status_rec.isVisible() and win.recording is None
        gaps = np.diff(beats) * 1000
        assert len(gaps) > 3 and gaps.max() < 250, gaps  # the event loop ran between frames
        with Image.open(out) as gif:
            assert gif.size == (1280, 720) and gif.n_frames == 7 and gif.info["loop"] == 0  # steps 2..8

        mp4 = tmp_path / "gen.mp4"
        rec = win.start_recording(mp4, size=(1920, 1080), fps=30, seconds_per_step=2.0)
        with qtbot.waitSignal(rec.failed, timeout=10000) as blocker:
            QTimer.singleShot(50, win.stop_recording)
        assert blocker.args == ["recording cancelled"] and not mp4.exists()
        assert win.record_action.isEnabled()
    finally:
        win.close()
        win.deleteLater()


def test_a_shipped_tour_renders(qtbot, tmp_path):
    from PIL import Image

    from explorer.ui.recorder import record

    out = tmp_path / "online_softmax.gif"
    stats = record(load_tour(ROOT / "assets" / "tours" / "online_softmax.toml"), out, size=SMALL, fps=1)
    assert stats.shots == 11 and 35 <= stats.seconds_video <= 60
    with Image.open(out) as gif:
        assert gif.n_frames == 11 and gif.info["loop"] == 0


# ------------------------------------------------------------------------------ computing without widgets
def test_scene_values_are_what_the_window_would_run(qtbot):
    """The recorder hands a runner what the view's panel would hold after the same settings: defaults, the seed,
    the scene's settings as the controls keep them (a float setting rounded, an integer given for it as a float)."""
    from explorer.ui.recorder.scenes import scene_values
    from explorer.ui.theme import THEMES
    from explorer.ui.views import VIEWS

    scenes = [(s.view, t.seed or 0, s.settings) for t in map(load_tour, TOURS) for s in t.scenes if s.kind == "view"]
    scenes += [("speculative", 7, {"accept": "sample", "temperature": 0.755}), ("generate", 3, {"temperature": 1})]
    for name, seed, settings in scenes:
        view = VIEWS[name](THEMES["light"])
        view.apply_settings({"seed": seed, **settings} if "seed" in view.setting_widgets() else settings)
        want = view.job_values()
        got = scene_values(VIEWS[name], seed, settings)
        assert got == want and [type(v) for v in got.values()] == [type(v) for v in want.values()], (name, settings)
        view.deleteLater()


def test_settings_that_follow_the_model_stop_at_its_last_layer_and_head():
    from types import SimpleNamespace

    from explorer.jobs import follow_model

    config = SimpleNamespace(num_layers=2, num_heads=4)
    assert follow_model("attention", {"layer": 3, "head": 1, "length": 64}, config) == {"layer": 1, "head": 1,
                                                                                        "length": 64}  # fmt: skip
    assert follow_model("speculative", {"gamma": 9}, config) == {"gamma": 9}


def test_the_recorder_computes_with_the_runners_not_views(qtbot, monkeypatch):
    """A tour's jobs run through explorer.jobs with no view built; the views that draw get the runner's meta."""
    from explorer.ui.recorder import Recorder
    from explorer.ui.recorder.scenes import ModelOverrides, compute_scenes
    from explorer.ui.views.base import View

    tour = single_view_tour("generate", 3)

    def no_views(*_a, **_k):
        raise AssertionError("a view was built to compute")

    with monkeypatch.context() as m:
        m.setattr(View, "__init__", no_views)
        computed = compute_scenes(tour, 0, ModelOverrides(), set(), lambda msg: None)
    assert len(computed[0].records) == 3 and computed[0].meta is not None
    rec = Recorder(tour, SMALL, 10)
    rec.compute()
    assert rec.views[0].meta is not None and len(rec.views[0].records) == 3
    for view in rec.views.values():
        view.deleteLater()
