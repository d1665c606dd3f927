"""Data parallel on real torch.distributed ranks (gloo, loopback): the launcher's guarantees (no orphans, one line
naming the failed rank and step), the hand-written ring all-reduce against dist.all_reduce, DDP's gradients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from explorer.distributed import ring
from explorer.distributed.launch import LaunchSpec, RankFailed, collect, run_ranks, torchrun_env
from explorer.errors import ExplorerError

RING = "explorer.distributed.ring:ring_check_worker"
FAULTS = "explorer.distributed.faults:fault_worker"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# ---------------------------------------------------------------- the ring


@pytest.mark.parametrize("n", [2, 3, 4])
def test_ring_equals_all_reduce_exactly_in_float64(n):
    size = 4 * n + 3  # does not divide by n
    results, _ = collect(RING, {"size": size, "dtype": "float64"}, LaunchSpec(n))
    inputs = [r["input"] for r in results]
    expected = np.sum(inputs, axis=0)
    for r in results:
        assert r["check"]["exact_float64"] and r["check"]["max_abs_diff"] == 0.0
        np.testing.assert_array_equal(r["result"], expected)  # grid values: every order gives the same float64
        sent = sum(t["bytes_sent"] for t in r["transfers"])
        assert len(r["transfers"]) == 2 * (n - 1)
        assert abs(sent - 2 * (n - 1) / n * size * 8) <= 2 * (n - 1) * 8  # chunks differ by at most one element


def test_ring_float32_follows_its_stated_order_and_matches_all_reduce_within_rounding():
    n, size = 3, 1001
    results, _ = collect(RING, {"size": size, "dtype": "float32", "grid": False}, LaunchSpec(n))
    inputs = [r["input"] for r in results]
    in_order = ring.ring_order_sum(inputs)
    for r in results:
        np.testing.assert_array_equal(r["result"], in_order)  # bit for bit: the order is the one stated
        check = r["check"]
        assert check["max_abs_diff"] <= check["bound"]
        assert check["exact_float64"] is False or check["max_abs_diff_float64"] == 0.0
    steps = {(t["phase"], t["step"]): t for t in results[1]["transfers"]}
    first = steps[("reduce-scatter", 0)]
    assert (first["sent_chunk"], first["sent_to"], first["recv_chunk"], first["recv_from"]) == (1, 2, 0, 0)
    assert first["bytes_sent"] == 334 * 4 and first["bytes_received"] == 334 * 4  # 1001 = 334 + 334 + 333


def test_contributions_grid_fills_phase_by_phase():
    n = 4
    start = ring.contributions(n, "reduce-scatter", -1)
    assert (start == 1).all()
    scattered = ring.contributions(n, "reduce-scatter", n - 2)
    for r in range(n):
        assert scattered[r, (r + 1) % n] == n  # rank r owns chunk r + 1 whole
    assert (ring.contributions(n, "all-gather", n - 2) == n).all()
    assert ring.chunk_bounds(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "fault, words",
    [("kill", "rank 1 died (killed by SIGKILL) at step 2"), ("exit", "rank 1 died (exited with code 7) at step 2"),
     ("raise", "rank 1 failed at step 2 (compute): a fault of rank 1's own"),
     ("hang", "rank 1 hung at step 2 (compute): no sign of life for 1.5 s")],
)  # fmt: skip
def test_a_failed_rank_stops_every_rank_with_one_line(fault, words):
    pids: list[int] = []
    t0 = time.monotonic()
    with pytest.raises(RankFailed) as info:
        for _ in run_ranks(FAULTS, {"rank": 1, "at_step": 2, "fault": fault, "steps": 4},
                           LaunchSpec(3, timeout_s=1.5), pids=pids):  # fmt: skip
            pass
    assert str(info.value).startswith(words) and "\n" not in str(info.value)
    assert (info.value.rank, info.value.step) == (1, 2)
    assert time.monotonic() - t0 < 8
    assert len(pids) == 3 and wait_gone(pids, 1.0) == []


LAUNCHER = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1)  # the test asks for the stacks when the launcher does not end
# Ctrl-C as in a terminal: a test run started in the background (``cmd &`` in a script) ignores SIGINT, and every
# process it starts inherits that (the launcher then never heard the signal: CI runs started that way failed here)
signal.signal(signal.SIGINT, signal.default_int_handler)
from explorer.distributed.launch import LaunchSpec, run_ranks
pids = []
for msg in run_ranks("explorer.distributed.faults:fault_worker", {"rank": 0, "at_step": 2, "fault": "hang"},
                     LaunchSpec(2, timeout_s=600, preload=("torch", "torch.distributed")), pids=pids):
    print(" ".join(map(str, pids)), flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_no_rank_outlives_an_interrupted_or_killed_launcher(signum):
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]  # step 1 reported; rank 0 hangs at step 2
        assert len(pids) == 2 and all(alive(p) for p in pids)
        proc.send_signal(signum)
        try:
            proc.wait(10)  # 0.6-1.2 s here, loaded or not
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack, for the report
            time.sleep(1.0)
            for pid in [proc.pid, *pids]:  # the ranks hold the pipes open too
                kill_quietly(pid)
            pytest.fail(f"the launcher did not end within 10 s of {signal.Signals(signum).name}; its stacks:\n"
                        + proc.communicate(timeout=10)[1][-4000:])  # fmt: skip
        assert wait_gone(pids, 3.0) == []
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_a_stop_from_another_thread_ends_every_rank_while_none_reports():
    """What the app's Cancel needs: rank 0 hangs (no message comes), yet a set stop ends the run within a poll."""
    import threading

    stop, pids = threading.Event(), []
    run = run_ranks(FAULTS, {"rank": 0, "at_step": 2, "fault": "hang", "steps": 3}, LaunchSpec(2, timeout_s=600),
                    pids=pids, stop=stop)  # fmt: skip
    first = next(run)  # step 1 reported; rank 0 hangs at step 2
    assert first.kind == "record" and all(alive(p) for p in pids)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    # ends without an error; the other rank's step 1 may come late (either rank may report first)
    assert {(m.rank, m.step) for m in run} <= {(0, 1), (1, 1)} - {(first.rank, first.step)}
    assert time.monotonic() - t0 < 0.2 + 0.5 + 3 and wait_gone(pids, 1.0) == []  # a poll, then SIGTERM, SIGKILL


def test_launch_errors_are_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ExplorerError, match=f"port {port} on 127.0.0.1 is in use"):
            collect(RING, {"size": 4}, LaunchSpec(2, port=port))
    with pytest.raises(ExplorerError, match="--backend must be one of gloo, nccl"):
        LaunchSpec(2, backend="mpi").check()
    import torch

    if torch.cuda.device_count() < 64:
        with pytest.raises(ExplorerError, match="--backend nccl needs one CUDA device per rank: 64 ranks"):
            LaunchSpec(64, backend="nccl").check()


def test_torchrun_environment_is_recognised(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert torchrun_env()["RANK"] == "1"
    assert os.environ["WORLD_SIZE"] == "2"


# ---------------------------------------------------------------- DDP


@pytest.fixture(scope="module")
def demo_target():
    from explorer.models.checkpoint import default_model_dirs, load_model

    return load_model(default_model_dirs()["target"], dtype="float32", device="cpu")


def run_ddp(lm, **values):
    from explorer.amp.engine import default_text
    from explorer.distributed.ddp import settings_from_values
    from explorer.distributed.job import training_job

    job = training_job(lm, settings_from_values({"cost": False, "train_layers": 1, **values}), default_text())
    return job, list(job.records())


@pytest.fixture(scope="module")
def ddp_run(demo_target):
    """One small run shared by the tests that read it: 2 ranks, 2 steps, uneven shards (3 rows)."""
    return run_ddp(demo_target, ranks=2, steps=2, batch=3, bucket_mb=0.5, seq_len=16)


def test_ddp_gradients_equal_one_process_and_the_ring(demo_target, ddp_run):
    from explorer.distributed.job import trained_names

    job, frames = ddp_run
    assert len(frames) == 2 * 2 * (2 - 1)  # 2(N-1) ring steps per training step
    steps = [f.step for f in frames if f.position == 0]
    assert [s.step for s in steps] == [1, 2] and [s.rows for s in steps][0] == [(0, 2), (2, 3)]  # uneven shards
    names = set(trained_names(demo_target, 1))
    for s in steps:
        one = s.one_process
        assert one["max_abs_diff"] <= 1e-5 * one["max_abs_grad"]  # DDP == one process on the whole batch
        assert abs(one["loss"] - s.loss) < 1e-5
        assert s.ring_vs_ddp <= 1e-6 * one["max_abs_grad"]  # the ring's sum / N == DDP's averaged bucket
        check = s.ring_check
        assert check["max_abs_diff"] <= check["bound"] and check["max_abs_diff_float64"] <= 1e-12
        bucketed = [p for b in s.buckets for p in b.params]
        assert sorted(bucketed) == sorted(names)  # every trained parameter in exactly one bucket
        for b in s.buckets:
            assert b.bytes == 4 * b.numel and (b.start <= b.finish).all()
            assert (b.finish <= s.backward[:, 1] + 1e-3).all()  # DDP's backward returns after its buckets
    rebuilt = steps[1].buckets
    assert len(rebuilt) > 1 and rebuilt[0].params[0] == "model.norm.weight"  # the order gradients became ready
    assert all(b.bytes - 0.5 * 2**20 < 4 * 256 * 768 for b in rebuilt)  # a bucket closes once past the cap


def test_ddp_errors_are_one_line(demo_target):
    from explorer.distributed.ddp import settings_from_values

    with pytest.raises(ExplorerError, match="--ranks 4 is more than the batch of 2 sequences"):
        settings_from_values({"ranks": 4, "batch": 2})
    with pytest.raises(RankFailed, match=r"rank \d failed at step 1 \(.*\): --ring-bucket 99: DDP made only"):
        run_ddp(demo_target, ranks=2, steps=1, batch=2, ring_bucket=99, seq_len=8, check=False)


def test_alpha_beta_fit_recovers_a_known_machine():
    from explorer.distributed.cost import AlphaBeta, fit

    truth = AlphaBeta(50e-6, 2e9, 0, 0.0)
    sizes = [2**k for k in range(10, 24, 3)]
    sweeps = [{"n": n, "sizes": sizes, "ring": [truth.ring(n, s) for s in sizes]} for n in range(2, 9)]
    got = fit(sweeps)
    assert got.alpha == pytest.approx(truth.alpha, rel=1e-6) and got.beta == pytest.approx(truth.beta, rel=1e-6)
    assert got.best(8, 1024) == "direct" and got.best(8, 2**16) == "tree" and got.best(2, 2**26) == "ring"
    assert got.wins_below(2, "tree") == 0.0  # at N = 2 a tree is the ring


def test_describe_words_and_the_view_render_every_ring_step(qtbot, ddp_run):
    from explorer.distributed import describe
    from explorer.ui.theme import THEMES
    from explorer.ui.views.ddp import DdpView

    job, frames = ddp_run
    f = frames[0]
    assert describe.phase_line(f).startswith("reduce-scatter 1 of 1: each rank sends one chunk")
    assert [m.label for m in describe.moves(f)] == ["c0", "c1"]
    assert describe.grid_text(f) == [(0, 0, "1/2", False), (0, 1, "2/2", True), (1, 0, "2/2", True),
                                     (1, 1, "1/2", False)]  # fmt: skip
    bars = describe.timeline_bars(f.step)
    assert {b.kind for b in bars} == {"forward", "backward", "bucket"} and all(b.end >= b.start for b in bars)
    assert 0.0 <= describe.overlap_share(frames[-1].step) <= 1.0
    assert "ring = dist.all_reduce" in describe.check_line(f.step)
    view = DdpView(THEMES["dark"])
    qtbot.addWidget(view)
    view.meta = job.meta
    for frame in frames:
        view.add_record(frame)
    for deterministic in (False, True):
        view.deterministic = deterministic
        for i in range(len(frames)):
            view.show_step(i)
    assert "step 2" in view.header.text() and "DDP = one process" in view.header.text()
    data = view.export_data()
    assert [s["step"] for s in data["steps"]] == [1, 2] and data["settings"]["ranks"] == 2
    header, rows = view.export_rows()
    assert len(rows) == len(frames) * 2 and header[0] == "timeline_step"
    view.show_step(-1)
    assert "Press Run" in view.header.text() or "Load a model" in view.header.text()


def test_cli_ddp_json(capsys):
    from explorer.cli.main import main

    code = main(["ddp", "--ranks", "2", "--steps", "1", "--batch", "2", "--seq-len", "8", "--train-layers", "1",
                 "--no-cost", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["meta"]["settings"]["ranks"] == 2
    step = out["steps"][0]
    assert step["one_process"]["max_abs_diff"] <= 1e-5 * step["one_process"]["max_abs_grad"]
    assert len(step["transfers"]) == 2 and len(step["transfers"][0]) == 2


def test_a_cancelled_run_in_the_gui_worker_ends_every_rank(qtbot, demo_target):
    """The app's worker thread iterates the job; Cancel stops it at the next record and the ranks go with it."""
    from explorer.amp.engine import default_text
    from explorer.distributed.ddp import settings_from_values
    from explorer.distributed.job import training_job
    from explorer.ui.worker import Worker

    values = {"ranks": 2, "steps": 50, "batch": 2, "seq_len": 8, "train_layers": 1, "cost": False, "check": False}
    job = training_job(demo_target, settings_from_values(values), default_text())
    worker = Worker()
    with qtbot.waitSignal(worker.record, timeout=60000):
        worker.start(job.records, stop=job.meta.stop)  # as the window starts a ddp run
    assert len(job.meta.pids) == 2 and all(alive(p) for p in job.meta.pids)
    with qtbot.waitSignal(worker.finished, timeout=30000):
        worker.cancel()
    assert job.meta.stop.is_set()  # Cancel reached the ranks' launcher, not only the loop between records
    assert worker.cancelled and wait_gone(job.meta.pids, 5.0) == []
    # the job's own stop (what Cancel can set too): the ranks end within a poll, between training steps or not
    job = training_job(demo_target, settings_from_values(values), default_text())
    records = job.records()
    first = next(records)
    job.meta.stop.set()
    rest = list(records)
    assert {f.step.step for f in rest} <= {first.step.step} and wait_gone(job.meta.pids, 5.0) == []


def test_the_cost_sweep_times_the_ring_and_all_reduce_on_real_ranks():
    from explorer.distributed.cost import fit

    results, _ = collect("explorer.distributed.cost:cost_worker", {"sizes": [4096, 65536], "repeats": 1},
                         LaunchSpec(2))  # fmt: skip
    sweep = results[0]
    assert sweep["n"] == 2 and sweep["sizes"] == [4096, 65536]
    assert all(t > 0 for t in sweep["ring"] + sweep["all_reduce"])
    assert results[1] == sweep  # the slowest rank's times: the same figures on every rank
    model = fit([sweep])
    assert model.points == 2 and model.alpha >= 0 and model.beta > 0


@pytest.mark.parametrize(("size", "lines"), [((1400, 800), 3), ((900, 420), 1)])
def test_ring_labels_stay_inside_their_panel(qtbot, ddp_run, size, lines):
    """At 1280x720 in presentation mode the ranks' three-line labels ran past the ring panel's edges: the ring
    scales so that every label fits, and where whole labels would shrink it to a dot they keep their last line."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from explorer.ui.theme import THEMES
    from explorer.ui.views.ddp import DdpView

    job, frames = ddp_run
    view = DdpView(THEMES["light"])
    qtbot.addWidget(view)
    view.meta = job.meta
    for frame in frames:
        view.add_record(frame)
    view.resize(*size)
    view.show()
    for _ in range(5):
        QApplication.processEvents()
    view.show_step(1)
    view.grab()  # painted: the labels follow the range set
    QApplication.processEvents()
    ring = view.ring_panel
    vb = ring.plot.getViewBox()
    box = vb.mapRectToScene(vb.boundingRect())
    labels = [item for item in ring.items if isinstance(item, pg.TextItem) and len(item.toPlainText()) > 2]  # not c0
    assert len(labels) == 2
    for item in labels:
        rect = item.mapRectToScene(item.boundingRect())
        assert box.adjusted(-1, -1, 1, 1).contains(rect), (item.toPlainText(), rect, box)
        assert len(item.toPlainText().splitlines()) == lines
