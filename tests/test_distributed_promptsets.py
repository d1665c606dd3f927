"""A prompt set over ranks, against one process: ``--workers N`` (local ranks) and torchrun write the run file one
process writes, except what the clock measures, and a run whose rank was killed resumes to that file (issue 24,
items 6 and 7). JSON between ranks travels as bytes in tensors (explorer/distributed/wire.py), never pickled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ddp import wait_gone

from explorer.distributed.launch import LaunchSpec, RankFailed, collect
from explorer.errors import ExplorerError
from explorer.speculative import runs

# six short code prompts: three per rank with two ranks, so that a rank killed after the first result is mid-share
PROMPTS = [("add", "def add(a, b):\n    "), ("loop", "for i in range(10):\n    "),
           ("cls", "class Point:\n    def __init__(self, x, y):\n        "), ("sq", "def square(x):\n    "),
           ("imp", "import os\nimport "), ("ret", "    return ")]  # fmt: skip


def comparable(path) -> list[dict]:
    """Every result of a run file without what the clock measures: the result line (stats without timings, no
    target-only speed) and its steps (without their seconds)."""
    run = runs.read_run(path)
    out = []
    for r in run.results:
        d = r.summary()
        d["stats"] = runs.without_timings(d["stats"])
        d.pop("target_only")
        d["steps"] = [{k: v for k, v in s.as_dict().items() if not k.endswith("_seconds")} for s in run.load_steps(r)]
        out.append(d)
    return out


def differences(a: list[dict], b: list[dict]) -> list:
    """(prompt, configuration, field) wherever two comparable runs differ; also a different length."""
    found = [(x["prompt"], x["config"], k) for x, y in zip(a, b, strict=False) for k in x if x[k] != y[k]]
    return found + ([("length", len(a), len(b))] if len(a) != len(b) else [])


@pytest.fixture
def one_thread():
    """torch on one thread, as torchrun's ranks (OMP_NUM_THREADS=1): a matmul's float sums depend on it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_json_travels_between_ranks_without_pickle():
    import numpy as np

    value = {"ids": np.arange(3), "text": "déjà vu ⟨1⟩", "p": np.float32(0.5), "nested": [None, True, 1.25]}
    results, _ = collect("explorer.distributed.wire:echo_worker", {"value": value}, LaunchSpec(3))
    plain = {"ids": [0, 1, 2], "text": "déjà vu ⟨1⟩", "p": 0.5, "nested": [None, True, 1.25]}
    for r in results:
        assert r["broadcast"] == plain and r["gathered"] == [[k, plain] for k in range(3)]
    assert results[0]["received"] == [{"rank": 1, "value": plain}, {"rank": 2, "value": plain}]


def test_workers_write_the_one_process_file_and_resume_after_a_killed_rank(tmp_path, one_thread):
    """Auto shapes (chain and EAGLE): every rank sizes them on the launcher's cost curve, so the steps agree too."""
    from explorer.distributed.promptsets import run_over_ranks
    from explorer.models.checkpoint import default_model_dirs, load_model
    from explorer.speculative.heads import find_heads, load_heads
    from explorer.speculative.options import SPECULATE
    from explorer.speculative.promptsets import Prompt, encode_prompt

    prompts = [Prompt(pid, text, pid) for pid, text in PROMPTS]
    dirs = default_model_dirs()
    target, draft = load_model(dirs["target"]), load_model(dirs["draft"])
    heads = {"eagle": load_heads(find_heads(target.path)["eagle"], target)}
    base = {**SPECULATE.defaults(), "method": "chain", "accept": "greedy", "max_new": 10, "gamma": 0}  # 0: auto
    configs = [runs.Configuration("base", base), runs.parse_compare("method=eagle", base)]
    header = runs.make_header(prompts, configs, target, draft, 0, heads=heads)

    def encode(p):
        return encode_prompt(target, p)

    with runs.RunWriter(tmp_path / "one.jsonl", header) as w:
        list(runs.run_prompt_set(target, draft, prompts, configs, w, heads=heads))
    with runs.RunWriter(tmp_path / "two.jsonl", header) as w:
        pids: list[int] = []
        killed = None
        with pytest.raises(RankFailed) as info:
            for _ in run_over_ranks(target, draft, prompts, configs, w, workers=2, encode=encode, heads=heads,
                                    pids=pids):  # fmt: skip
                if killed is None:  # after the first result: rank 1 dies mid-run
                    os.kill(pids[1], signal.SIGKILL)
                    killed = time.monotonic()
        stopped = time.monotonic() - killed
    message = str(info.value)
    assert "\n" not in message and info.value.rank == 1
    assert message.startswith(f"rank 1 died (killed by SIGKILL) at step {info.value.step} (")
    assert stopped < 5 and wait_gone(pids, 3.0) == []  # every rank ended, none left behind
    one, partial = comparable(tmp_path / "one.jsonl"), comparable(tmp_path / "two.jsonl")
    assert 1 <= len(partial) < len(one) and not differences(partial, one[: len(partial)])  # a complete prefix
    with runs.RunWriter(tmp_path / "two.jsonl", header) as w:  # the same run again: resumed
        assert len(w.run.results) == len(partial)
        list(run_over_ranks(target, draft, prompts, configs, w, workers=2, encode=encode, heads=heads))
    assert not differences(comparable(tmp_path / "two.jsonl"), one)


def torchrun_ranks(agent: int) -> dict[int, int]:
    """rank -> pid of the processes torchrun's agent started (its children, RANK in their environment)."""
    found = {}
    for task in os.listdir(f"/proc/{agent}/task"):
        for pid in map(int, Path(f"/proc/{agent}/task/{task}/children").read_text().split()):
            env = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
            if b"RANK" in env:
                found[int(env[b"RANK"])] = pid
    return found


def test_torchrun_writes_the_one_process_file_and_resumes_after_a_killed_rank(tmp_path, one_thread, monkeypatch):
    """torchrun --standalone --nproc-per-node 2 -m explorer speculate --prompts F --out RUN.jsonl (auto shapes):
    rank 1 killed after the first result, rank 0 names it and its step in one line, torchrun ends every rank, the
    file is a complete prefix, and the same command resumes it to the one-process file."""
    from explorer.cli.main import main
    from explorer.speculative import shape

    monkeypatch.chdir(tmp_path)
    # the cost curve as torchrun's launcher will find it (the disk cache), not one this process measured earlier
    # while another process may have written the cache since: two curves size two sets of shapes
    monkeypatch.setattr(shape, "_CURVES", {})
    Path("p.jsonl").write_text("".join(f'{{"id": "{i}", "prompt": {t!r}}}\n'.replace("'", '"') for i, t in PROMPTS))
    options = ["--prompts", "p.jsonl", "--max-new-tokens", "10"]
    assert main(["speculate", *options, "--out", "one.jsonl"]) == 0  # one process, one thread
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "explorer", "speculate", *options, "--out", "two.jsonl"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and agent.poll() is None:
            if Path("two.jsonl").exists() and runs.read_run("two.jsonl").results:
                break
            time.sleep(0.05)
        ranks = torchrun_ranks(agent.pid)
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.monotonic()
        _, err = agent.communicate(timeout=30)
        stopped = time.monotonic() - killed
    finally:
        agent.kill()
    lines = [line for line in err.splitlines() if line.startswith("explorer: error:")]
    assert len(lines) == 1 and lines[0].startswith("explorer: error: rank 1 is gone (its connection closed"), err
    assert " at step " in lines[0] and "(prompt " in lines[0], lines[0]
    assert agent.returncode != 0 and stopped < 10 and wait_gone(list(ranks.values()), 3.0) == []
    one, partial = comparable("one.jsonl"), comparable("two.jsonl")
    assert 1 <= len(partial) < len(one) and not differences(partial, one[: len(partial)])  # a complete prefix
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming two.jsonl: {len(partial)} of {len(one)} done" in again.stderr
    assert [line.split()[0] for line in again.stdout.splitlines()[: len(one) - len(partial)]] == [
        i for i, _ in PROMPTS[len(partial) :]
    ]  # only rank 0 prints, one line per prompt it merged, in order
    assert not differences(comparable("two.jsonl"), one)


def test_torchrun_sigterm_while_rank_0_reports_a_failed_rank_leaves_that_report(monkeypatch):
    """torchrun sees the dead rank too and sends rank 0 SIGTERM: landing after rank 0's merge has raised the failure
    (its handler gone), it must not turn the one line naming the rank into a bare exit 143 (seen once in CI)."""
    import queue
    from types import SimpleNamespace

    from explorer.distributed import torchrun_set
    from explorer.interrupt import Terminated, interrupts

    failure = RankFailed("rank 1 is gone (its connection closed: the process died or was killed) at step 1", 1, 1)

    class FailedInbox:  # rank 1's receiving thread has already seen its connection close
        def __init__(self, shard, world):
            self.failure, self.threads, self.active, self.results = failure, [], True, queue.Queue()
            self.results.put(None)

    monkeypatch.setattr(torchrun_set, "_Inbox", FailedInbox)
    shard = SimpleNamespace(pairs=[(0, 0), (1, 0)], dealt=[[], [(0, 0), (1, 0)]])
    outer = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(RankFailed) as info, interrupts():
            try:
                list(torchrun_set._merge(shard, None, 2))
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # torchrun's, while the failure is on its way out
        assert info.value is failure
        os.kill(os.getpid(), signal.SIGTERM)  # and after: the process ends with the failure's exit code
        time.sleep(0.01)
    except Terminated:
        pytest.fail("torchrun's SIGTERM replaced the report of the failed rank")
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_torchrun_and_launch_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from explorer.cli.main import main

    def error_of(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        return err

    monkeypatch.setenv("RANK", "0")  # as torchrun's rank 0: refused before any rank waits on another
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "runs a prompt set: give --prompts FILE --out RUN.jsonl" in error_of(["speculate", "--prompt", "x"])
    assert "the ranks are torchrun's: leave out --workers" in error_of(
        ["speculate", "--prompt", "x", "--out", str(tmp_path / "r.jsonl"), "--workers", "2"]
    )
    monkeypatch.delenv("RANK")
    ddp = ["ddp", "--steps", "1", "--no-cost", "--train-layers", "1", "--seq-len", "8"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert f"port {port} on 127.0.0.1 is in use" in error_of([*ddp, "--ranks", "2", "--port", str(port)])
    assert "--ranks 4 is more than the batch of 2 sequences" in error_of([*ddp, "--ranks", "4", "--batch", "2"])
    assert "--backend must be one of gloo, nccl (got 'mpi')" in error_of([*ddp, "--backend", "mpi"])
    import torch

    if torch.cuda.device_count() < 8:
        assert "--backend nccl needs one CUDA device per rank: 8 ranks" in error_of(
            [*ddp, "--ranks", "8", "--batch", "8", "--backend", "nccl"]
        )
    with pytest.raises(ExplorerError, match="--workers must be at least 1"):
        from explorer.distributed.promptsets import run_over_ranks

        list(run_over_ranks(None, None, [], [], workers=0, encode=None))
