"""Ring all-reduce by hand, chunk by chunk, between neighbours with ``isend``/``irecv`` (Qt-free).

N ranks, a 1-D tensor cut into N chunks (as ``torch.tensor_split``: the first ``numel % N`` chunks one element
longer, so sizes that do not divide by N work). Reduce-scatter, steps s = 0..N−2: rank r sends chunk (r − s) mod N
to rank r + 1 and adds the chunk (r − s − 1) mod N it receives from rank r − 1 to its own; afterwards rank r holds
the whole sum of chunk (r + 1) mod N. All-gather, steps s = 0..N−2: rank r sends chunk (r + 1 − s) mod N and
replaces chunk (r − s) mod N with the one it receives. Every rank sends 2(N−1) chunks, 2(N−1)/N of the tensor.

Each step posts the send and the receive together and waits on both (blocking ``send`` then ``recv`` on every rank
would deadlock: each would wait for a receiver that is itself sending).

Summation order: chunk c is summed around the ring starting at rank c: ((x_c + x_{c+1}) + x_{c+2}) + … +
x_{c+N−1} (ranks mod N), in the tensor's dtype. :func:`ring_order_sum` reproduces it; ``dist.all_reduce`` (gloo)
may add in another order, so in float32 the two agree within rounding and in float64 on values whose sums are
exact (integers, or numbers on a coarse grid) they agree bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

PHASES = ("reduce-scatter", "all-gather")
PREVIEW = 4  # values of each received chunk kept in a record


@dataclass
class RingTransfer:
    """One rank's part of one ring step: what it sent and received, and the chunk it received after the step."""

    phase: str  # "reduce-scatter" or "all-gather"
    step: int  # within the phase, 0..N-2
    rank: int
    sent_chunk: int
    sent_to: int
    recv_chunk: int
    recv_from: int
    bytes_sent: int
    bytes_received: int
    seconds: float  # from posting the send and receive to both done
    preview: np.ndarray  # the received chunk's first values after the step (a partial sum in reduce-scatter)
    norm: float  # the L2 norm of that chunk after the step

    def to_json(self) -> dict:
        names = ("phase", "step", "rank", "sent_chunk", "sent_to", "recv_chunk", "recv_from", "bytes_sent",
                 "bytes_received", "seconds", "norm")  # fmt: skip
        out = {k: getattr(self, k) for k in names}
        out["preview"] = [float(v) for v in self.preview]
        return out


def chunk_bounds(numel: int, n: int) -> list[tuple[int, int]]:
    """(start, stop) of each of the n chunks, as torch.tensor_split cuts."""
    base, extra = divmod(numel, n)
    bounds, start = [], 0
    for c in range(n):
        stop = start + base + (1 if c < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def schedule(rank: int, n: int, phase: str, step: int) -> tuple[int, int]:
    """(chunk sent, chunk received) by ``rank`` at this step."""
    if phase == PHASES[0]:
        return (rank - step) % n, (rank - step - 1) % n
    return (rank + 1 - step) % n, (rank - step) % n


def contributions(n: int, phase: str, step: int) -> np.ndarray:
    """[rank, chunk]: how many ranks' values each rank's copy of each chunk holds after this step (step −1 of the
    reduce-scatter: before the first, 1 everywhere). N means the complete sum."""
    held = np.ones((n, n), dtype=np.int64)
    for p, steps in ((PHASES[0], range(n - 1)), (PHASES[1], range(n - 1))):
        for s in steps:
            if p == phase and s > step:
                return held
            new = held.copy()
            for r in range(n):
                _, recv = schedule(r, n, p, s)
                incoming = held[(r - 1) % n, recv]
                new[r, recv] = held[r, recv] + incoming if p == PHASES[0] else incoming
            held = new
            if p == phase and s == step:
                return held
    return held


def ring_order_sum(inputs: list[np.ndarray]) -> np.ndarray:
    """The ring's result computed in one process, in the ring's order: chunk c summed from rank c around the ring."""
    n = len(inputs)
    out = np.empty_like(inputs[0])
    for c, (a, b) in enumerate(chunk_bounds(len(out), n)):
        acc = inputs[c][a:b].copy()
        for k in range(1, n):
            acc = inputs[(c + k) % n][a:b] + acc
        out[a:b] = acc
    return out


def ring_allreduce(tensor, group=None, on_step=None) -> tuple[object, list[RingTransfer]]:
    """Sum ``tensor`` (1-D, contiguous) over every rank of ``group`` by a ring of isend/irecv; returns the sum (a
    new tensor) and this rank's :class:`RingTransfer` per step. ``on_step(phase, step)`` is called before each."""
    import torch
    import torch.distributed as dist

    rank, n = dist.get_rank(group), dist.get_world_size(group)
    buf = tensor.detach().clone().contiguous()
    if n == 1:
        return buf, []
    bounds = chunk_bounds(buf.numel(), n)
    right, left = (rank + 1) % n, (rank - 1) % n
    to_global = (lambda r: dist.get_global_rank(group, r)) if group is not None else (lambda r: r)
    records = []
    for phase_index, phase in enumerate(PHASES):
        for step in range(n - 1):
            if on_step is not None:
                on_step(phase, step)
            send_c, recv_c = schedule(rank, n, phase, step)
            (sa, sb), (ra, rb) = bounds[send_c], bounds[recv_c]
            outgoing = buf[sa:sb].clone()
            incoming = torch.empty(rb - ra, dtype=buf.dtype, device=buf.device)
            tag = phase_index * n + step
            t0 = time.perf_counter()
            reqs = [dist.isend(outgoing, to_global(right), group=group, tag=tag),
                    dist.irecv(incoming, to_global(left), group=group, tag=tag)]  # fmt: skip
            for req in reqs:
                req.wait()
            seconds = time.perf_counter() - t0
            if phase == PHASES[0]:
                buf[ra:rb] += incoming
            else:
                buf[ra:rb] = incoming
            chunk = buf[ra:rb]
            records.append(RingTransfer(
                phase=phase, step=step, rank=rank, sent_chunk=send_c, sent_to=right, recv_chunk=recv_c,
                recv_from=left, bytes_sent=outgoing.numel() * outgoing.element_size(),
                bytes_received=incoming.numel() * incoming.element_size(), seconds=seconds,
                preview=chunk[:PREVIEW].double().cpu().numpy(), norm=float(chunk.double().norm()),
            ))  # fmt: skip
    return buf, records


@dataclass
class RingCheck:
    """The ring's result against ``dist.all_reduce`` of the same tensor, in its dtype and in float64."""

    dtype: str
    max_abs_diff: float  # ring vs dist.all_reduce in ``dtype``
    max_abs_diff_float64: float  # the same two done on the values cast to float64
    exact_float64: bool
    bound: float  # N·ε·Σ|x| (max over elements): what rounding alone can explain in ``dtype``

    def to_json(self) -> dict:
        return dict(vars(self))


def check_against_all_reduce(tensor, ring_result, group=None) -> RingCheck:
    """Run ``dist.all_reduce`` on copies of ``tensor`` (its dtype, then float64) and compare with the ring's result
    (also repeated in float64) — every rank must call this."""
    import torch
    import torch.distributed as dist

    n = dist.get_world_size(group)
    reference = tensor.detach().clone()
    dist.all_reduce(reference, group=group)
    wide = tensor.detach().double()
    ring64, _ = ring_allreduce(wide, group)
    ref64 = wide.clone()
    dist.all_reduce(ref64, group=group)
    magnitude = tensor.detach().abs().double()
    dist.all_reduce(magnitude, group=group)
    eps = torch.finfo(tensor.dtype).eps if tensor.dtype.is_floating_point else 0.0
    return RingCheck(
        dtype=str(tensor.dtype).removeprefix("torch."),
        max_abs_diff=float((ring_result.double() - reference.double()).abs().max()) if tensor.numel() else 0.0,
        max_abs_diff_float64=float((ring64 - ref64).abs().max()) if tensor.numel() else 0.0,
        exact_float64=bool(torch.equal(ring64, ref64)),
        bound=float(n * eps * magnitude.max()) if tensor.numel() else 0.0,
    )


def ring_check_worker(ctx, args: dict) -> dict:
    """A launcher worker: the ring on a seeded tensor per rank (``size``, ``dtype``, ``grid``: values on a 2^-20
    grid so that float64 sums are exact), returned with the check and every rank's input for the ring order."""
    import torch

    dtype = getattr(torch, args.get("dtype", "float32"))
    gen = torch.Generator().manual_seed(1000 + ctx.rank)
    x = torch.randn(args["size"], generator=gen, dtype=torch.float64)
    if args.get("grid", True):
        x = torch.round(x * 2**20) / 2**20
    x = x.to(dtype)
    ctx.at(1, "ring")
    with ctx.collective("ring all-reduce"):
        result, records = ring_allreduce(x)
    check = check_against_all_reduce(x, result)
    return {
        "input": x.numpy(),
        "result": result.numpy(),
        "check": check.to_json(),
        "transfers": [r.to_json() for r in records],
    }
