"""DistributedDataParallel as it really runs, one rank's side (Qt-free): the worker :func:`ddp_worker` runs in
every rank started by :mod:`explorer.distributed.launch`.

Each rank loads the model, makes the same trainable fp32 copy (the last ``train_layers`` layers trainable, as the
amp engine does), wraps it in the real ``torch.nn.parallel.DistributedDataParallel`` and trains on its shard of
each global batch (the same seeded batch on every rank, cut into contiguous row ranges). The shard's loss is
its summed token cross-entropy over the whole batch's token count, times N: DDP's average of the ranks' gradients
is then exactly the gradient of the whole batch's mean loss, whatever the shard sizes.

What is recorded comes from DDP itself: a comm hook (``register_comm_hook``) that does what the default
``allreduce_hook`` does (divide by N, ``all_reduce``) and notes when each bucket's all-reduce started (the hook is
called when all its gradients are ready) and finished (the future's callback), which parameters each bucket
holds, in which order, and its bytes; post-accumulate-grad hooks give when each gradient was ready. After the
backward, the chosen bucket's local gradients go through the hand-written ring (:mod:`explorer.distributed.ring`)
and are checked against ``dist.all_reduce`` and against what DDP put in the bucket; rank 0 also computes the
whole batch's gradients in one process with the same weights (``check``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ExplorerError
from .options import DDP

FIRST_BUCKET_BYTES = 1024 * 1024  # torch's dist._DEFAULT_FIRST_BUCKET_BYTES, used with the default cap only
DEFAULT_BUCKET_MB = 25.0


@dataclass
class DdpSettings:
    ranks: int = 4
    steps: int = 2
    train_layers: int = 2
    bucket_mb: float = 1.0  # 0: torch's default (25 MiB, first bucket 1 MiB)
    ring_bucket: int = 0
    backend: str = "gloo"
    batch: int = 8
    seq_len: int = 32
    lr: float = 1e-2
    seed: int = 0
    check: bool = True
    cost: bool = True
    port: int = 0
    timeout: float = 60.0

    def validate(self) -> None:
        DDP.check({k: v for k, v in asdict(self).items() if k in DDP})
        if self.batch < self.ranks:
            raise ExplorerError(
                f"--ranks {self.ranks} is more than the batch of {self.batch} sequences: every rank needs at least "
                "one (give a larger --batch or fewer --ranks)"
            )

    def caps(self) -> tuple[float, float]:
        """(bucket cap, first bucket cap) in bytes, as DDP applies them."""
        if self.bucket_mb == 0:
            return DEFAULT_BUCKET_MB * 2**20, float(FIRST_BUCKET_BYTES)
        return self.bucket_mb * 2**20, self.bucket_mb * 2**20


def settings_from_values(values: dict[str, Any]) -> DdpSettings:
    """The checked settings from the schema's values (the view's panel, a tour, ``explorer ddp``'s flags)."""
    v = {**DDP.defaults(), **values}
    settings = DdpSettings(**{k: v[k] for k in DdpSettings.__dataclass_fields__})
    settings.validate()
    return settings


def shard_rows(batch: int, ranks: int) -> list[tuple[int, int]]:
    """Contiguous rows of the global batch per rank (the first ``batch % ranks`` ranks one row more)."""
    from .ring import chunk_bounds

    return chunk_bounds(batch, ranks)


@dataclass
class _HookState:
    """What the comm hook learns during one backward."""

    world: int
    ring_bucket: int
    names: dict[int, str]
    started: dict[int, float] = field(default_factory=dict)
    finished: dict[int, float] = field(default_factory=dict)
    layout: dict[int, list[str]] = field(default_factory=dict)
    numel: dict[int, int] = field(default_factory=dict)
    local: Any = None  # the ring bucket's local gradients, before the all-reduce
    averaged: Any = None  # the same bucket after DDP's all-reduce (averaged)

    def clear(self) -> None:
        for d in (self.started, self.finished, self.layout, self.numel):
            d.clear()
        self.local = self.averaged = None


def _recording_hook(state: _HookState, bucket):
    """DDP's default all-reduce hook (divide by N, all_reduce), timed, with the bucket's layout noted."""
    import torch.distributed as dist

    index = bucket.index()
    state.started[index] = time.monotonic()
    buffer = bucket.buffer()
    state.layout[index] = [state.names[id(p)] for p in bucket.parameters()]
    state.numel[index] = buffer.numel()
    if index == state.ring_bucket:
        state.local = buffer.detach().clone()
    buffer.div_(state.world)
    future = dist.all_reduce(buffer, async_op=True).get_future()

    def finished(fut):
        state.finished[index] = time.monotonic()
        out = fut.value()[0]
        if index == state.ring_bucket:
            state.averaged = out.detach().clone()
        return out

    return future.then(finished)


def _shard_loss(model, x, y, total_tokens: int, world: int):
    import torch.nn.functional as F

    logits = model(x)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
    return ce * (world / total_tokens), float(ce.detach()) / max(y.numel(), 1)


def _one_process_grads(reference, module, params, names, x, y) -> dict:
    """The whole batch in one process with DDP's current weights: max |g_ddp − g_one| against max |g|."""
    import torch
    import torch.nn.functional as F

    reference.load_state_dict(module.state_dict())
    ref_params = dict(reference.named_parameters())
    logits = reference(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    grads = torch.autograd.grad(loss, [ref_params[n] for n in names])
    diff = max(float((p.grad - g).abs().max()) for p, g in zip(params, grads, strict=True))
    scale = max(float(g.abs().max()) for g in grads)
    return {"max_abs_diff": diff, "max_abs_grad": scale, "loss": float(loss.detach())}


class _Rank:
    """One rank's training state: the DDP model, its hooks and what one step records."""

    def __init__(self, ctx, args: dict):
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        from ..amp.engine import freeze_all_but_last, trainable_copy
        from ..models.checkpoint import load_model

        self.ctx, self.s = ctx, DdpSettings(**args["settings"])
        self.tokens = np.asarray(args["tokens"], dtype=np.int64)
        lm = load_model(args["model"], dtype="float32", device=ctx.device, tokenizer=False)
        torch.manual_seed(self.s.seed)
        model = trainable_copy(lm, ctx.device)
        freeze_all_but_last(model, self.s.train_layers)
        self.reference = copy.deepcopy(model) if ctx.rank == 0 and self.s.check else None
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names, self.params = [n for n, _ in named], [p for _, p in named]
        self.ready: dict[str, float] = {}
        for n, p in named:
            p.register_post_accumulate_grad_hook(lambda _p, n=n: self.ready.__setitem__(n, time.monotonic()))
        cap_mb = self.s.bucket_mb if self.s.bucket_mb > 0 else None
        self.ddp = DistributedDataParallel(model, bucket_cap_mb=cap_mb, device_ids=None)
        self.state = _HookState(dist.get_world_size(), self.s.ring_bucket, {id(p): n for n, p in named})
        self.ddp.register_comm_hook(self.state, _recording_hook)
        self.opt = torch.optim.SGD(self.params, lr=self.s.lr)
        self.rng = np.random.default_rng(self.s.seed)

    def step(self, step: int) -> dict:
        from ..amp.engine import sample_batch

        ctx, s, state = self.ctx, self.s, self.state
        x, y = sample_batch(self.tokens, s.batch, s.seq_len, self.rng)  # the same global batch on every rank
        a, b = shard_rows(s.batch, ctx.world_size)[ctx.rank]
        state.clear()
        self.ready.clear()
        ctx.at(step, "forward")
        t_forward = time.monotonic()
        self.opt.zero_grad(set_to_none=True)
        loss, shard_ce = _shard_loss(self.ddp, x[a:b].to(ctx.device), y[a:b].to(ctx.device), y.numel(),
                                     ctx.world_size)  # fmt: skip
        ctx.at(step, "backward")
        t_backward = time.monotonic()
        with ctx.collective("backward + bucket all-reduces"):
            loss.backward()
        t_done = time.monotonic()
        out = {"step": step, "rank": ctx.rank, "rows": [a, b], "loss": shard_ce, "t_forward": t_forward,
               "t_backward": t_backward, "t_backward_done": t_done,
               "ready": [self.ready.get(n) for n in self.names]}  # fmt: skip
        out.update(self._buckets())
        out.update(self._ring(step))
        if self.reference is not None:
            out["one_process"] = _one_process_grads(self.reference, self.ddp.module, self.params, self.names, x, y)
        self.opt.step()
        return out

    def _buckets(self) -> dict:
        st = self.state
        order = sorted(st.started)
        return {
            "buckets": [
                {
                    "index": i,
                    "params": st.layout[i],
                    "numel": st.numel[i],
                    "bytes": st.numel[i] * 4,
                    "start": st.started[i],
                    "finish": st.finished.get(i),
                }
                for i in order
            ],  # fmt: skip
        }

    def _ring(self, step: int) -> dict:
        from .ring import check_against_all_reduce, ring_allreduce

        st, ctx = self.state, self.ctx
        if st.local is None:
            raise ExplorerError(
                f"--ring-bucket {st.ring_bucket}: DDP made only {len(st.started)} buckets at step {step} "
                f"(their indexes run 0..{len(st.started) - 1})"
            )
        with ctx.collective("ring all-reduce"):
            ring_sum, transfers = ring_allreduce(st.local)
            check = check_against_all_reduce(st.local, ring_sum)
        vs_ddp = float((ring_sum / ctx.world_size - st.averaged).abs().max())
        return {"ring_bucket": st.ring_bucket, "ring_numel": int(st.local.numel()),
                "transfers": [t.to_json() for t in transfers], "ring_check": check.to_json(),
                "ring_vs_ddp": vs_ddp, "ring_result": ring_sum[:8].double().numpy()}  # fmt: skip


def ddp_worker(ctx, args: dict) -> dict:
    """Launcher worker: ``settings.steps`` DDP steps, one ``step`` message each; with ``cost`` the last step's
    message also carries the all-reduce timings of several sizes (:func:`explorer.distributed.cost.sweep`)."""
    rank = _Rank(ctx, args)
    for step in range(1, rank.s.steps + 1):
        record = rank.step(step)
        if step == rank.s.steps and rank.s.cost:
            from .cost import sweep

            ctx.at(step, "cost sweep")
            with ctx.collective("cost sweep"):
                record["cost"] = sweep(args.get("cost_sizes"))
        ctx.report("step", record)
    return {"rank": ctx.rank, "pid": __import__("os").getpid()}
