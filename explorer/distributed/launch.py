"""N real torch.distributed processes on this machine, and nothing left behind (Qt-free).

:func:`run_ranks` starts ``world_size`` processes (``torch.multiprocessing``; ``forkserver`` by default, whose server
imports torch once so that a rank starts in ~0.1 s instead of ~2 s of ``spawn``), each joining one process group
over a free loopback port (``init_process_group`` with ``tcp://127.0.0.1:PORT`` and a timeout), and runs one worker
function in every rank. What the ranks report comes back through one queue of plain objects (tuples of str, int,
float, dict, list and numpy arrays; nothing is written to disk) and is yielded as :class:`Message` in arrival order.

Guarantees, whatever happens:

* every rank process is ended when the run ends, fails, is cancelled (the generator closed) or interrupted (Ctrl-C,
  SIGTERM): terminate, then kill after a grace period, then join; ranks ignore SIGINT (the launcher owns Ctrl-C)
  and leave by themselves within half a second if the launcher disappears (a watchdog thread on its pid);
* a rank that dies, fails, or reports nothing for ``timeout_s`` seconds (hung) ends the run for every rank within
  seconds, with one line naming that rank and the step it was at (:class:`RankFailed`); a rank that died without
  a word is named before the ranks whose collectives then failed because of it.

The same worker runs under ``torchrun`` (:func:`torchrun_env`, :func:`run_under_torchrun`): there the ranks are
torchrun's and the results are gathered to rank 0 as JSON.
"""

from __future__ import annotations

import errno
import importlib
import os
import queue as queue_module
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..errors import ExplorerError

BACKENDS = ("gloo", "nccl")
START_METHODS = ("forkserver", "spawn")
LOOPBACK = "127.0.0.1"
GRACE_S = 2.0  # after SIGTERM, before SIGKILL
# What every rank imports, imported once by the forkserver: a rank then starts in ~0.1 s. DDP's constructor imports
# torch._dynamo (seconds on a busy machine), so it is here too.
PRELOAD = ("torch", "torch.distributed", "torch._dynamo", "torch.nn.parallel", "numpy", "explorer.amp.engine",
           "explorer.models.checkpoint")  # fmt: skip


class RankFailed(ExplorerError):
    """A rank died, failed or hung; the message is one line naming it and its step."""

    def __init__(self, message: str, rank: int, step: int):
        super().__init__(message)
        self.rank, self.step = rank, step


@dataclass(frozen=True)
class Message:
    """One report of one rank: ``kind`` is the worker's word ("record", "result", ...), ``step`` where it was."""

    kind: str
    rank: int
    step: int
    payload: Any = None


@dataclass
class LaunchSpec:
    world_size: int
    backend: str = "gloo"
    port: int = 0  # 0: a free loopback port
    timeout_s: float = 60.0  # a rank silent this long counts as hung
    start_method: str = "forkserver"
    env: dict[str, str] = field(default_factory=dict)  # set in every rank before torch.distributed starts
    preload: tuple[str, ...] = PRELOAD  # modules the forkserver imports once, when it starts (first launch)
    threads: int = 1  # torch threads per rank (N ranks share this machine's cores)

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise ExplorerError(f"--backend must be one of {', '.join(BACKENDS)} (got {self.backend!r})")
        if self.world_size < 1:
            raise ExplorerError(f"--ranks must be at least 1 (got {self.world_size})")
        if self.start_method not in START_METHODS:
            raise ExplorerError(f"start method must be one of {', '.join(START_METHODS)} (got {self.start_method!r})")
        if self.backend == "nccl":
            check_nccl(self.world_size)


def check_nccl(world_size: int) -> None:
    """NCCL needs one CUDA device per rank (ranks do not share a GPU here)."""
    import torch
    import torch.distributed as dist

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < world_size:
        raise ExplorerError(
            f"--backend nccl needs one CUDA device per rank: {world_size} ranks, torch sees {gpus} "
            "(use --backend gloo on the CPU)"
        )
    if not dist.is_nccl_available():
        raise ExplorerError("--backend nccl: this torch build has no NCCL (use --backend gloo)")


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def check_port(port: int) -> int:
    """``port`` if it is free on the loopback address, else one line saying it is taken; 0 picks a free one."""
    if port == 0:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ExplorerError(
                    f"port {port} on {LOOPBACK} is in use (another run or program listens there); give another "
                    "--port, or 0 for a free one"
                ) from None
            raise ExplorerError(f"cannot use port {port} on {LOOPBACK}: {exc.strerror}") from None
    return port


# ---------------------------------------------------------------- inside a rank


class Board:
    """Where every rank is, in shared memory: written by the rank, read by the launcher, and still there when the
    rank dies mid-step (a queued message might not be). Steps, the phase, the time of the last sign of life
    (CLOCK_MONOTONIC, one clock for every process), and whether the rank waits inside a collective."""

    PHASE_BYTES = 48

    def __init__(self, ctx, world_size: int):
        self.steps = ctx.RawArray("q", world_size)
        self.beats = ctx.RawArray("d", [time.monotonic()] * world_size)
        self.waiting = ctx.RawArray("b", world_size)
        self.phases = ctx.RawArray("c", world_size * self.PHASE_BYTES)

    def mark(self, rank: int, step: int, phase: str, waiting: bool) -> None:
        self.steps[rank] = step
        raw = phase.encode()[: self.PHASE_BYTES].ljust(self.PHASE_BYTES, b"\0")
        self.phases[rank * self.PHASE_BYTES : (rank + 1) * self.PHASE_BYTES] = raw
        self.waiting[rank] = waiting
        self.beats[rank] = time.monotonic()

    def phase(self, rank: int) -> str:
        raw = self.phases[rank * self.PHASE_BYTES : (rank + 1) * self.PHASE_BYTES]
        return raw.rstrip(b"\0").decode(errors="replace")

    def where(self, rank: int) -> str:
        phase = self.phase(rank)
        return f"step {self.steps[rank]}" + (f" ({phase})" if phase else "")


class RankContext:
    """What a worker sees: its rank, the world, its device; :meth:`report` sends plain data to the launcher,
    :meth:`at` says where the rank is and :meth:`collective` that it waits on the others (what a failure or a hang
    is reported against). Under torchrun (no launcher) reports are kept in ``kept``."""

    def __init__(self, rank: int, world_size: int, backend: str, device: str, sink: Any | None, board=None):
        self.rank, self.world_size, self.backend, self.device = rank, world_size, backend, device
        self.step, self.phase = 0, ""
        self._sink, self._board = sink, board
        self.kept: list[Message] = []

    def report(self, kind: str, payload: Any = None) -> None:
        """Send plain data (JSON-able values and numpy arrays) to the launcher; also a sign of life."""
        msg = (kind, self.rank, self.step, payload)
        if self._sink is None:
            self.kept.append(Message(*msg))
        else:
            self._sink.put(msg)
        self._mark(False)

    def at(self, step: int, phase: str = "") -> None:
        self.step, self.phase = step, phase
        self._mark(False)

    @contextmanager
    def collective(self, phase: str) -> Iterator[None]:
        """Inside: this rank waits on the others (not the one to blame when everyone is silent)."""
        self.phase = phase
        self._mark(True)
        try:
            yield
        finally:
            self._mark(False)

    def _mark(self, waiting: bool) -> None:
        if self._board is not None:
            self._board.mark(self.rank, self.step, self.phase, waiting)


def load_worker(spec: str) -> Callable[[RankContext, dict], Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _watch_launcher(launcher_pid: int) -> None:
    """Leave at once if the launcher is gone (killed with SIGKILL, say): no rank outlives it."""
    while True:
        time.sleep(0.25)
        try:
            os.kill(launcher_pid, 0)
        except ProcessLookupError:
            os._exit(3)
        except PermissionError:
            pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:400]


def _is_comm_error(exc: BaseException) -> bool:
    """A collective that failed because a peer went away (the peer is the cause, not this rank)."""
    import torch.distributed as dist

    words = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(
        w in words for w in ("connection", "gloo", "timed out", "timeout", "broken pipe", "peer")
    )


def _rank_main(rank: int, spec: LaunchSpec, port: int, worker: str, args: dict, sink, board: Board,
               launcher_pid: int) -> None:  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_launcher, args=(launcher_pid,), daemon=True).start()
    os.environ.update(spec.env)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(spec.threads)
    device = f"cuda:{rank}" if spec.backend == "nccl" else "cpu"
    ctx = RankContext(rank, spec.world_size, spec.backend, device, sink, board)
    try:
        ctx.at(0, "init")
        if spec.backend == "nccl":
            torch.cuda.set_device(rank)
        ctx.phase = "joining the process group"
        ctx._mark(True)
        dist.init_process_group(
            spec.backend,
            init_method=f"tcp://{LOOPBACK}:{port}",
            rank=rank,
            world_size=spec.world_size,
            timeout=timedelta(seconds=spec.timeout_s + 5),  # the launcher names a hung rank first
        )
        ctx.at(0, "started")
        result = load_worker(worker)(ctx, args)
        dist.destroy_process_group()
        ctx.report("result", result)
    except BaseException as exc:  # noqa: BLE001 - reported as one line; the launcher decides what to say
        message = _one_line(exc)
        if "address already in use" in message.lower() or "eaddrinuse" in message.lower():
            message = f"port {port} on {LOOPBACK} is in use; give another --port, or 0 for a free one"
        comm = not isinstance(exc, ExplorerError) and _is_comm_error(exc)
        ctx.report("error", {"message": message, "type": type(exc).__name__, "comm": comm})
        sink.close()
        sink.join_thread()
        os._exit(1)
    sink.close()
    sink.join_thread()


# ---------------------------------------------------------------- the launcher


def _context(method: str, preload: tuple[str, ...]):
    import torch.multiprocessing as mp

    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(list(preload))
        _start_forkserver()
    return ctx


def _start_forkserver() -> None:
    """Start the forkserver deaf to SIGINT (an ignored signal stays ignored across exec, and Python then installs no
    KeyboardInterrupt handler): Ctrl-C in a terminal reaches the whole process group, and a forkserver interrupted
    while it imports torch would print a traceback and take every later launch with it. It ends when we do."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()  # no Ctrl-C to fear off the main thread (the app's worker)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_name(code: int) -> str:
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def stop_all(procs: list) -> None:
    """End every rank process: SIGTERM, a grace period, SIGKILL, join (those never started are left alone)."""
    procs = [p for p in procs if p.pid is not None]
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.05))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)


class _Watch:
    """The launcher's view of the ranks: the board (where each is), who finished, and the first failure, named."""

    def __init__(self, board: Board, world_size: int, timeout_s: float):
        self.board, self.world_size, self.timeout_s = board, world_size, timeout_s
        self.done: set[int] = set()
        self.errors: dict[int, dict] = {}

    def note(self, msg: Message) -> None:
        if msg.kind == "result":
            self.done.add(msg.rank)
        elif msg.kind == "error":
            self.errors[msg.rank] = msg.payload

    def hung(self) -> int | None:
        """Once every unfinished rank has been silent ``timeout_s``: the one not waiting in a collective (the
        others wait for it), the furthest behind, silent longest."""
        now, board = time.monotonic(), self.board
        waiting = [r for r in range(self.world_size) if r not in self.done]
        if not waiting or any(now - board.beats[r] <= self.timeout_s for r in waiting):
            return None
        return min(waiting, key=lambda r: (board.waiting[r], board.steps[r], board.beats[r]))

    def failure(self, procs: list) -> RankFailed | None:
        """The cause, if anything failed: a rank that died without a word first, then one whose own error is not
        a failed collective, then the first error."""
        where = self.board.where
        for r, p in enumerate(procs):
            code = p.exitcode
            if code not in (None, 0) and r not in self.errors and r not in self.done:
                how = _signal_name(code) if code < 0 else f"exited with code {code}"
                return RankFailed(f"rank {r} died ({how}) at {where(r)}; every rank was stopped", r,
                                  self.board.steps[r])  # fmt: skip
            if code == 0 and r not in self.done and r not in self.errors:
                return RankFailed(f"rank {r} exited without a result at {where(r)}", r, self.board.steps[r])
        if not self.errors:
            return None
        own = [r for r, e in self.errors.items() if not e.get("comm")]
        r = own[0] if own else next(iter(self.errors))
        text = self.errors[r]["message"]
        return RankFailed(f"rank {r} failed at {where(r)}: {text}; every rank was stopped", r, self.board.steps[r])


def run_ranks(worker: str, args: dict, spec: LaunchSpec, pids: list[int] | None = None,
              stop: threading.Event | None = None) -> Iterator[Message]:  # fmt: skip
    """Run ``worker`` ("module:function", called as ``worker(ctx, args)``) in ``spec.world_size`` ranks and yield
    their messages as they arrive; each rank's return value arrives as a ``result`` message. Ends when every rank
    has returned; raises :class:`RankFailed` (one line) when one did not. ``pids`` receives the rank pids.
    ``stop``, once set (from any thread), ends the run and every rank within a poll (0.1 s), even while no rank
    reports: a consumer that only closes the generator is heard at the next message."""
    spec.check()
    port = check_port(spec.port)
    ctx = _context(spec.start_method, spec.preload)
    sink = ctx.Queue()
    board = Board(ctx, spec.world_size)
    procs = [
        ctx.Process(target=_rank_main, args=(r, spec, port, worker, args, sink, board, os.getpid()), daemon=True)
        for r in range(spec.world_size)
    ]
    watch = _Watch(board, spec.world_size, spec.timeout_s)
    try:
        for p in procs:
            p.start()
        for r in range(spec.world_size):  # silence counts from here: the forkserver's first start imports torch
            board.beats[r] = max(board.beats[r], time.monotonic())
        if pids is not None:
            pids.extend(p.pid for p in procs)
        while len(watch.done) < spec.world_size:
            if stop is not None and stop.is_set():
                return
            try:
                msg = Message(*sink.get(timeout=0.1))
            except queue_module.Empty:
                msg = None
            if msg is not None:
                watch.note(msg)
                if msg.kind != "error":
                    yield msg
                continue
            if any(p.exitcode not in (None, 0) for p in procs) or watch.errors or _exited_silently(procs, watch):
                _drain(sink, watch, 0.5)  # the cause's own report may still be in the pipe
                failure = watch.failure(procs)
                if failure is not None:
                    raise failure
            hung = watch.hung()
            if hung is not None:
                raise RankFailed(
                    f"rank {hung} hung at {board.where(hung)}: no sign of life for {spec.timeout_s:g} s; every rank "
                    "was stopped", hung, board.steps[hung],
                )  # fmt: skip
    finally:
        stop_all(procs)
        sink.close()
        sink.cancel_join_thread()


def _exited_silently(procs: list, watch: _Watch) -> bool:
    return any(p.exitcode == 0 and r not in watch.done for r, p in enumerate(procs))


def _drain(sink, watch: _Watch, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            watch.note(Message(*sink.get(timeout=0.05)))
        except queue_module.Empty:
            pass


def collect(worker: str, args: dict, spec: LaunchSpec) -> tuple[list[Any], list[Message]]:
    """Run to the end: the ranks' results by rank, and every other message in arrival order."""
    results: list[Any] = [None] * spec.world_size
    messages = []
    for msg in run_ranks(worker, args, spec):
        if msg.kind == "result":
            results[msg.rank] = msg.payload
        else:
            messages.append(msg)
    return results, messages


# ---------------------------------------------------------------- under torchrun

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def torchrun_env() -> dict[str, str] | None:
    """torchrun's variables when this process is one of its ranks, else None."""
    found = {k: os.environ.get(k) for k in TORCHRUN_VARS}
    return found if found["RANK"] is not None and found["WORLD_SIZE"] is not None else None


def gather_json(value: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's JSON-able ``value`` at rank ``dst`` (None elsewhere), sent as UTF-8 bytes in tensors."""
    import torch.distributed as dist

    from .wire import all_gather_json

    gathered = all_gather_json(value)
    return gathered if dist.get_rank() == dst else None


def run_under_torchrun(worker: str, args: dict, backend: str = "gloo", timeout_s: float = 60.0) -> list[dict] | None:
    """The same worker with this process as one of torchrun's ranks. At rank 0, per rank: ``result`` (the worker's
    return value) and ``messages`` (what it reported, as [kind, step, payload]), as JSON data (numpy arrays become
    lists); None on the other ranks."""
    import torch
    import torch.distributed as dist

    env = torchrun_env()
    if env is None:
        raise ExplorerError("not started by torchrun (RANK and WORLD_SIZE are not set)")
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    local = int(env["LOCAL_RANK"] or 0)
    if backend == "nccl":
        check_nccl(1)
        torch.cuda.set_device(local)
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    try:
        ctx = RankContext(rank, world, backend, f"cuda:{local}" if backend == "nccl" else "cpu", None)
        result = load_worker(worker)(ctx, args)
        messages = [[m.kind, m.step, m.payload] for m in ctx.kept]
        return gather_json({"result": result, "messages": messages})
    finally:
        dist.destroy_process_group()
