"""The one way a data-parallel run is computed (Qt-free): the ddp view, a tour's recording and ``explorer ddp``
start the ranks here. The ranks are child processes; this side only gathers their messages into records, so the
GUI's worker thread never computes and a cancelled run ends every rank (the generator's ``finally``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..jobs import Job
from ..session import Session
from .cost import AlphaBeta, fit
from .ddp import DdpSettings, settings_from_values
from .launch import LaunchSpec, run_ranks
from .records import DdpStep, RingFrame, gather_step, ring_frames

WORKER = "explorer.distributed.ddp:ddp_worker"


@dataclass
class DdpRunMeta:
    """What a data-parallel run was: the model, its settings, the trained parameters (DDP's bucket members), the
    caps DDP applied, and, once the last step arrives, the measured all-reduce timings and the α–β fit."""

    version = 1
    model: str
    settings: DdpSettings
    param_names: list[str]
    bucket_cap: float
    first_bucket_cap: float
    cost: dict | None = None
    fitted: AlphaBeta | None = None
    fitted_all_reduce: AlphaBeta | None = None
    steps_done: int = 0
    pids: list[int] = field(default_factory=list)  # the rank processes, once started (all ended when the run ends)
    # set from any thread (the app's Cancel): the ranks end within 0.1 s, not at the next training step
    stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "model": self.model, "settings": asdict(self.settings),
            "bucket_cap_bytes": self.bucket_cap, "first_bucket_cap_bytes": self.first_bucket_cap,
            "cost": self.cost, "alpha_beta": self.fitted.to_json() if self.fitted else None,
            "alpha_beta_all_reduce": self.fitted_all_reduce.to_json() if self.fitted_all_reduce else None,
        }  # fmt: skip


def trained_names(lm, train_layers: int) -> list[str]:
    """The parameter names DDP will bucket (those that train), in registration order, without building a copy."""
    from ..amp.engine import group_of

    cfg = lm.config
    first = max(cfg.num_layers - train_layers, 0) if train_layers > 0 else 0
    names = []
    for name, _ in lm.model.named_parameters():
        group = group_of(name)
        if train_layers > 0 and not ((group.startswith("layers.") and int(group.split(".")[1]) >= first)
                                     or group == "head"):  # fmt: skip
            continue
        if train_layers > 0 and name.startswith("model.embed_tokens"):
            continue
        names.append(name)
    return names


def launch_args(lm, settings: DdpSettings, text: str) -> dict:
    from ..amp.engine import text_tokens

    tokens = text_tokens(lm.encode, text, settings.seq_len)
    return {"settings": asdict(settings), "tokens": np.asarray(tokens, dtype=np.int64), "model": str(lm.path)}


def spec_of(settings: DdpSettings) -> LaunchSpec:
    return LaunchSpec(settings.ranks, backend=settings.backend, port=settings.port, timeout_s=settings.timeout)


def training_job(lm, settings: DdpSettings, text: str) -> Job:
    """``settings.steps`` DDP steps of ``lm`` on ``settings.ranks`` ranks; records are :class:`RingFrame` (one per
    ring step); the metadata learns the cost model with the last step."""
    ctx_len = lm.config.max_position_embeddings
    if settings.seq_len > ctx_len:
        from ..errors import ExplorerError

        raise ExplorerError(
            f"--seq-len must be at most {lm.name}'s context of {ctx_len} tokens (got {settings.seq_len})"
        )
    names = trained_names(lm, settings.train_layers)
    cap, first = settings.caps()
    meta = DdpRunMeta(model=str(lm.path), settings=settings, param_names=names, bucket_cap=cap, first_bucket_cap=first)
    args = launch_args(lm, settings, text)

    def records() -> Iterator[RingFrame]:
        for step in run_steps(args, settings, meta.pids, meta.stop):
            if step.cost is not None:
                meta.cost = step.cost
                meta.fitted = fit([step.cost], "ring")
                meta.fitted_all_reduce = fit([step.cost], "all_reduce")
            meta.steps_done = step.step
            yield from ring_frames(step, (step.step - 1) * 2 * (settings.ranks - 1))

    return Job(meta, records)


def run_steps(args: dict, settings: DdpSettings, pids: list[int] | None = None,
              stop: threading.Event | None = None) -> Iterator[DdpStep]:  # fmt: skip
    """The ranks' step messages gathered into one :class:`DdpStep` per training step, as each completes."""
    pending: dict[int, dict[int, dict]] = {}
    for msg in run_ranks(WORKER, args, spec_of(settings), pids=pids, stop=stop):
        if msg.kind != "step":
            continue
        parts = pending.setdefault(msg.payload["step"], {})
        parts[msg.rank] = msg.payload
        if len(parts) == settings.ranks:
            del pending[msg.payload["step"]]
            yield gather_step(parts)


def ddp_job(session: Session, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    """The ddp view's run (explorer.jobs): the session's target trained data-parallel on the default text."""
    from ..amp.engine import default_text

    values = dict(values)
    if deterministic:
        values["cost"] = False  # a recording measures nothing with the clock
    return training_job(session.target, settings_from_values(values), default_text())
