"""JSON between torch.distributed ranks, as UTF-8 bytes in uint8 tensors (Qt-free; no pickle).

torch's ``*_object`` collectives (``gather_object``, ``broadcast_object_list``, ``send_object_list``) pickle, and
unpickling what another process sent runs whatever it names; these send plain JSON data instead (numpy arrays and
scalars become lists and numbers). Every message is a length (one int64) followed by the bytes, on CPU tensors, so
they need a gloo group (a CPU one beside nccl)."""

from __future__ import annotations

import json
from typing import Any


def _plain(value: Any) -> Any:
    """numpy arrays and scalars as JSON lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def to_bytes(value: Any):
    """``value`` as a uint8 tensor of its JSON text."""
    import torch

    return torch.frombuffer(bytearray(json.dumps(value, default=_plain).encode()), dtype=torch.uint8)


def from_bytes(data, length: int | None = None) -> Any:
    return json.loads(bytes(data[: data.numel() if length is None else length].tolist()).decode())


def send_json(value: Any, dst: int, group=None) -> None:
    """Send ``value`` to rank ``dst`` (which calls :func:`recv_json`); returns once it is sent."""
    import torch
    import torch.distributed as dist

    data = to_bytes(value)
    dist.send(torch.tensor([data.numel()], dtype=torch.int64), dst, group=group)
    if data.numel():
        dist.send(data, dst, group=group)


def recv_json(src: int, group=None) -> Any:
    """What rank ``src`` sent with :func:`send_json` (blocks until it arrives or the group's timeout)."""
    import torch
    import torch.distributed as dist

    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, src, group=group)
    data = torch.zeros(int(size.item()), dtype=torch.uint8)
    if data.numel():
        dist.recv(data, src, group=group)
    return from_bytes(data)


def broadcast_json(value: Any, src: int = 0, group=None) -> Any:
    """Rank ``src``'s ``value`` on every rank (the others pass anything, e.g. None), as JSON data on every rank,
    ``src`` included (tuples become lists, numpy arrays lists): the same data everywhere."""
    import torch
    import torch.distributed as dist

    mine = dist.get_rank() == src
    data = to_bytes(value) if mine else None
    size = torch.tensor([data.numel() if mine else 0], dtype=torch.int64)
    dist.broadcast(size, src, group=group)
    if not mine:
        data = torch.zeros(int(size.item()), dtype=torch.uint8)
    dist.broadcast(data, src, group=group)
    return from_bytes(data)


def all_gather_json(value: Any, group=None) -> list[Any]:
    """Every rank's ``value``, by rank, on every rank."""
    import torch
    import torch.distributed as dist

    data = to_bytes(value)
    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64), group=group)
    longest = max(int(s.item()) for s in sizes)
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[: data.numel()] = data
    parts = [torch.zeros(longest, dtype=torch.uint8) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return [from_bytes(p, int(s.item())) for p, s in zip(parts, sizes, strict=True)]


def echo_worker(ctx, args: dict) -> dict:
    """A launcher worker that sends ``args["value"]`` through every function here (tests, and trying by hand):
    rank 0 broadcasts it, rank r sends it tagged with r to rank 0, and every rank gathers every rank's copy."""
    value = broadcast_json(args["value"] if ctx.rank == 0 else None)
    received = []
    if ctx.rank == 0:
        received = [recv_json(r) for r in range(1, ctx.world_size)]
    else:
        send_json({"rank": ctx.rank, "value": value}, 0)
    return {"broadcast": value, "received": received, "gathered": all_gather_json([ctx.rank, value])}
