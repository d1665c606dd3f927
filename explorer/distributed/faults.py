"""A worker that fails on purpose, for the launcher's fault tests and for trying a fault by hand (Qt-free):
``steps`` all-reduce steps in every rank, and at step ``at_step`` rank ``rank`` does ``fault``: ``exit`` (dies
with code 7), ``kill`` (SIGKILLs itself), ``hang`` (sleeps forever), ``raise`` (an error of its own)."""

from __future__ import annotations

import os
import signal
import time

FAULTS = ("none", "exit", "kill", "hang", "raise")


def fault_worker(ctx, args: dict) -> dict:
    import torch
    import torch.distributed as dist

    total = 0.0
    for step in range(1, args.get("steps", 3) + 1):
        ctx.at(step, "compute")
        if ctx.rank == args.get("rank", -1) and step == args.get("at_step", -1):
            fault = args.get("fault", "none")
            if fault == "exit":
                os._exit(7)
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "hang":
                while True:
                    time.sleep(1)
            if fault == "raise":
                raise ValueError(f"a fault of rank {ctx.rank}'s own")
        t = torch.tensor([float(ctx.rank + step)])
        with ctx.collective("all-reduce"):
            dist.all_reduce(t)
        total += float(t)
        ctx.report("record", {"step": step, "sum": float(t)})
    return {"total": total, "pid": os.getpid()}
