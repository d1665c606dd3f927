"""A prompt set under torchrun (Qt-free): ``torchrun --nproc-per-node N -m explorer speculate --prompts F --out
RUN.jsonl``, on one node or several (issue 24 item 6).

Every rank loads the models itself; rank 0 decides everything else and tells the others as JSON (:mod:`.wire`, no
pickle): the pairs the run file does not hold yet, dealt as ``--workers`` deals them (:func:`.promptsets.deal`),
the prompts' ids, its verification-cost curve and torch thread count (auto shapes and float sums must come out as
one process's). Each rank first checks that it would write the same run (models, prompts, options, explorer
version) and every rank stops with one line if one would not. The other ranks stream each result to rank 0 as it
is done; rank 0 runs its own share meanwhile and writes every result through the run file's writer in the one-
process order, so a run stopped anywhere leaves a complete prefix that the same command resumes.

A rank that dies or fails: rank 0's receiving thread sees its connection close (or its error message), names it and
the step in one line, and ends rank 0, whereupon torchrun stops the others. All of this runs on a gloo group (CPU
tensors), whatever device the models are on.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from ..errors import ExplorerError
from ..interrupt import Terminated, ending
from .launch import RankFailed, torchrun_env
from .promptsets import deal, result_of, result_payload, shared_curve
from .wire import all_gather_json, broadcast_json, recv_json, send_json

RESULT_TIMEOUT_S = 600.0  # a rank with no result for this long counts as hung (gloo's timeout for one receive)
VERDICT_WAIT_S = 2.5  # on torchrun's SIGTERM, how long rank 0 waits to learn which rank failed (1 s: missed once in CI)


def torchrun_rank() -> int | None:
    """This process's rank under torchrun, else None."""
    env = torchrun_env()
    return None if env is None else int(env["RANK"])


def join(device: str | None = None, timeout_s: float = RESULT_TIMEOUT_S) -> tuple[int, int]:
    """Join torchrun's process group once (gloo, ``env://``): (rank, world size). With ``--device cuda`` each rank
    takes the GPU of its local rank, so that "cuda" names that one when the models load."""
    import torch
    import torch.distributed as dist

    env = torchrun_env()
    if env is None:
        raise ExplorerError("not started by torchrun (RANK and WORLD_SIZE are not set)")
    if not dist.is_initialized():
        if device in (None, "cuda") and torch.cuda.is_available():  # no device: cuda when available
            torch.cuda.set_device(int(env["LOCAL_RANK"] or 0) % torch.cuda.device_count())
        dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=timeout_s))
        atexit.register(_leave)
    return dist.get_rank(), dist.get_world_size()


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def first_rank_decides(decide: Callable[[], Any], device: str | None = None) -> Any:
    """``decide()``; under torchrun rank 0 alone computes it (a cost curve measured by N ranks at once on one
    machine would be N times too slow) and every rank gets its JSON answer. Rank 0's error is its one line; the
    other ranks then leave quietly."""
    if torchrun_env() is None:
        return decide()
    rank, _ = join(device)
    if rank != 0:
        got = broadcast_json(None)
        if "error" in got:
            raise SystemExit(1)
        return got["value"]
    try:
        value = decide()
    except BaseException as exc:
        broadcast_json({"error": str(exc)})
        raise
    broadcast_json({"value": value})
    return value


def _same_run(plan: dict, header: dict, rank: int) -> str | None:
    """Why this rank would not write rank 0's run (None when it would)."""
    from .. import __version__
    from ..speculative.runs import SAME_RUN_KEYS

    here = f"rank {rank} on {socket.gethostname()}"
    there = f"rank 0 on {plan['host']}"
    if plan["version"] != __version__:
        return f"{here} runs explorer {__version__}, {there} {plan['version']}"
    mine = json.loads(json.dumps({k: header.get(k) for k in SAME_RUN_KEYS}))
    for key in SAME_RUN_KEYS:
        if mine[key] != plan["run"][key]:
            return f"{here} would write another run than {there}: its {key} differ"
    return None


def run_set(target, draft, prompts: list, configs: list, writer=None, *, encode, header: dict,
            heads: dict | None = None, device: str | None = None) -> Iterator[Any]:  # fmt: skip
    """Like :func:`explorer.speculative.runs.run_prompt_set` (same order, same resume) over torchrun's ranks: at rank
    0 it yields every result in the one-process order, written through ``writer``; elsewhere it yields nothing."""
    import torch

    from .. import __version__
    from ..speculative.runs import SAME_RUN_KEYS

    rank, world = join(device)
    plan = None
    if rank == 0:
        done = writer.run.done() if writer is not None else set()
        pairs = [(pi, ci) for pi, p in enumerate(prompts) for ci in range(len(configs)) if (p.id, ci) not in done]
        plan = {
            "host": socket.gethostname(), "version": __version__, "threads": torch.get_num_threads(),
            "run": {k: header.get(k) for k in SAME_RUN_KEYS}, "pairs": pairs, "dealt": deal(pairs, world),
            "ids": {str(pi): list(encode(prompts[pi])) for pi in sorted({p for p, _ in pairs})},
            "curve": shared_curve(target, configs) if pairs else None,
        }  # fmt: skip
    plan = broadcast_json(plan)
    problems = all_gather_json(_same_run(plan, header, rank) if rank else None)
    problem = next((p for p in problems if p), None)
    if problem is not None:
        if rank == 0:
            raise ExplorerError(f"{problem}; every node needs the same models at the same paths, the same prompts "
                                "file and options, and the same explorer")  # fmt: skip
        raise SystemExit(1)
    torch.set_num_threads(plan["threads"])  # a matmul's float sums depend on it
    shard = _Shard(target, draft, prompts, configs, plan, heads)
    if rank == 0:
        yield from _merge(shard, writer, world)
    else:
        _serve(shard, rank)


class _Shard:
    """One rank's part of the plan and what it needs to run a pair."""

    def __init__(self, target, draft, prompts: list, configs: list, plan: dict, heads: dict | None):
        self.target, self.draft, self.prompts, self.configs, self.heads = target, draft, prompts, configs, heads
        self.plan, self.baseline = plan, {}
        self.pairs = [tuple(pc) for pc in plan["pairs"]]
        self.dealt = [[tuple(pc) for pc in share] for share in plan["dealt"]]

    def run(self, pair: tuple[int, int]):
        from ..speculative.runs import run_one

        pi, ci = pair
        ids = self.plan["ids"][str(pi)]
        return run_one(self.target, self.draft, self.prompts[pi], ids, self.configs[ci], ci, self.baseline,
                       self.heads, self.plan["curve"])  # fmt: skip

    def where(self, rank: int, step: int) -> str:
        """``step`` (counted from 1 in the rank's share) and what it was running."""
        share = self.dealt[rank]
        if not 1 <= step <= len(share):
            return f"step {step}"
        pi, ci = share[step - 1]
        return f"step {step} (prompt {self.prompts[pi].id}, configuration {self.configs[ci].key})"


def _serve(shard: _Shard, rank: int) -> None:
    """A rank other than 0: run its share, send each result to rank 0 as it is done, then wait for rank 0 to have
    them all (leaving earlier could cut off what is still on its way)."""
    for step, pair in enumerate(shard.dealt[rank], start=1):
        try:
            payload = result_payload(pair, shard.run(pair))
        except ExplorerError as exc:
            payload = {"pair": list(pair), "error": str(exc)}
        try:
            send_json(payload, 0)
        except RuntimeError as exc:
            raise ExplorerError(f"rank {rank}: rank 0 (which writes the run file) is gone at "
                                f"{shard.where(rank, step)}: {_one_line(exc)}") from None  # fmt: skip
        if "error" in payload:
            raise SystemExit(1)  # rank 0 names it
    if shard.dealt[rank]:
        try:
            recv_json(0)
        except RuntimeError:
            pass  # rank 0 had everything; whatever stopped it is its own line


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _lost(exc: BaseException) -> str:
    """What a failed receive says about the rank it waited on, in a few words (gloo's message is long)."""
    words = _one_line(exc)
    low = words.lower()
    if "closed by peer" in low or "connection reset" in low or "broken pipe" in low:
        return "is gone (its connection closed: the process died or was killed)"
    if "timed out" in low or "timeout" in low:
        return f"sent no result for {RESULT_TIMEOUT_S:g} s (hung?)"
    return f"is gone ({words[:160]})"


class _Inbox:
    """Rank 0's receiving side: one thread per other rank, each taking that rank's results in turn; the first
    failure is kept and rank 0's main thread is interrupted with it (SIGUSR1), even in the middle of a pair."""

    def __init__(self, shard: _Shard, world: int):
        self.shard, self.results = shard, queue.Queue()
        self.failure: RankFailed | None = None
        self.active = True  # while rank 0's main thread handles SIGUSR1 (SIGUSR1's default action ends a process)
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._receive, args=(r,), daemon=True, name=f"rank {r} results")
                        for r in range(1, world) if shard.dealt[r]]  # fmt: skip

    def _receive(self, rank: int) -> None:
        step = 0
        try:
            for step in range(1, len(self.shard.dealt[rank]) + 1):
                payload = recv_json(rank)
                if "error" in payload:
                    self.fail(RankFailed(f"rank {rank} failed at {self.shard.where(rank, step)}: {payload['error']}",
                                         rank, step))  # fmt: skip
                    return
                self.results.put(payload)
        except RuntimeError as exc:
            self.fail(RankFailed(f"rank {rank} {_lost(exc)} at {self.shard.where(rank, step)}; torchrun stops every "
                                 "rank, and the same command resumes the run file", rank, step))  # fmt: skip
            return
        try:
            send_json("received", rank)
        except RuntimeError:
            pass  # it has left already: its results are all here

    def fail(self, failure: RankFailed) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self.failure = failure
        self.results.put(None)
        if self.active:
            os.kill(os.getpid(), signal.SIGUSR1)


def _merge(shard: _Shard, writer, world: int) -> Iterator[Any]:
    """Rank 0: its own share, the others' results as they come, all written and yielded in the one-process order."""
    order = {pc: k for k, pc in enumerate(shard.pairs)}
    inbox = _Inbox(shard, world)
    waiting: dict[int, Any] = {}
    next_k = 0
    raised = []

    def on_signal(signum, frame) -> None:
        if signum == signal.SIGTERM:  # torchrun stops us: a rank failed; wait a moment to learn which
            deadline = time.monotonic() + VERDICT_WAIT_S
            while inbox.failure is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if inbox.failure is None:
                raise Terminated()
        if inbox.failure is not None and not raised:
            raised.append(True)
            raise inbox.failure

    def take(payload) -> None:
        if payload is None:
            if not raised:
                raised.append(True)
                raise inbox.failure
            return
        waiting[order[tuple(payload["pair"])]] = payload

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        for t in inbox.threads:
            t.start()
        mine = iter(shard.dealt[0])
        while next_k < len(shard.pairs):
            while True:  # whatever arrived meanwhile
                try:
                    take(inbox.results.get_nowait())
                except queue.Empty:
                    break
            while next_k in waiting:
                item = waiting.pop(next_k)
                result = result_of(item) if isinstance(item, dict) else item
                if writer is not None:
                    writer.write(result)
                next_k += 1
                yield result
            pair = next(mine, None)
            if pair is not None:
                waiting[order[pair]] = shard.run(pair)
            elif next_k < len(shard.pairs):
                try:
                    take(inbox.results.get(timeout=0.5))
                except queue.Empty:
                    pass
        for t in inbox.threads:
            t.join(5)
    finally:
        inbox.active = False
        if raised:  # a rank's failure on its way out: torchrun's SIGTERM for it must not replace its line
            previous[signal.SIGTERM] = ending
        for s, h in previous.items():
            signal.signal(s, h)
