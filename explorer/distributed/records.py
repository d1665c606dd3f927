"""What a data-parallel run emits (Qt-free): one :class:`DdpStep` per training step, gathered from every rank,
and one :class:`RingFrame` per ring step — the timeline's unit: 2(N−1) frames per training step."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ring import PHASES, contributions


@dataclass
class BucketSpan:
    """One DDP bucket in one step: its parameters in DDP's order, its size, and per rank when its all-reduce
    started (all its gradients ready: the comm hook ran) and finished, in seconds from the step's origin."""

    index: int
    params: list[str]
    numel: int
    bytes: int
    start: np.ndarray  # [ranks]
    finish: np.ndarray  # [ranks]


@dataclass
class DdpStep:
    """One training step of every rank. Times are seconds from the step's origin (the first rank's forward)."""

    step: int  # from 1
    ranks: int
    rows: list[tuple[int, int]]  # each rank's rows of the global batch
    losses: np.ndarray  # [ranks] mean token cross-entropy of each shard
    forward: np.ndarray  # [ranks] forward start
    backward: np.ndarray  # [ranks, 2] backward start, backward returned (DDP waits for its buckets there)
    ready: np.ndarray  # [ranks, params] when each trained gradient was accumulated (nan: never)
    buckets: list[BucketSpan]
    ring_bucket: int
    ring_numel: int
    transfers: list[list[dict]]  # [rank][ring step] RingTransfer.to_json()
    ring_check: dict  # rank 0's RingCheck.to_json()
    ring_vs_ddp: float  # max over ranks of |ring sum / N − DDP's averaged bucket|
    one_process: dict | None  # rank 0: max |g_DDP − g_one process on the whole batch|, max |g|, the loss
    cost: dict | None = None  # the last step: all-reduce timings of several sizes (cost.sweep)
    ring_head: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the ring's summed first values, rank 0

    @property
    def loss(self) -> float:
        sizes = np.array([b - a for a, b in self.rows], dtype=np.float64)
        return float((self.losses * sizes).sum() / sizes.sum())

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "loss": self.loss,
            "losses": self.losses.tolist(),
            "rows": [list(r) for r in self.rows],
            "forward": self.forward.tolist(),
            "backward": self.backward.tolist(),
            "buckets": [
                {
                    "index": b.index,
                    "params": b.params,
                    "numel": b.numel,
                    "bytes": b.bytes,
                    "start": b.start.tolist(),
                    "finish": b.finish.tolist(),
                }
                for b in self.buckets
            ],  # fmt: skip
            "ring_bucket": self.ring_bucket,
            "ring_numel": self.ring_numel,
            "transfers": self.transfers,
            "ring_check": self.ring_check,
            "ring_vs_ddp": self.ring_vs_ddp,
            "one_process": self.one_process,
        }


@dataclass
class RingFrame:
    """One ring step of one training step (the shared timeline's step)."""

    index: int  # timeline step, from 0
    step: DdpStep
    phase: str
    ring_step: int  # within the phase, 0..N-2
    grid: np.ndarray  # [rank, chunk] ranks' values summed into each copy after this step (N: complete)
    moves: list[dict]  # per rank: its RingTransfer.to_json() for this step

    @property
    def position(self) -> int:
        """0..2(N−1)−1 within the training step."""
        return (0 if self.phase == PHASES[0] else self.step.ranks - 1) + self.ring_step


def ring_frames(step: DdpStep, first_index: int) -> list[RingFrame]:
    n = step.ranks
    frames = []
    for k in range(2 * (n - 1)):
        phase, s = (PHASES[0], k) if k < n - 1 else (PHASES[1], k - (n - 1))
        frames.append(RingFrame(first_index + k, step, phase, s, contributions(n, phase, s),
                                [step.transfers[r][k] for r in range(n)]))  # fmt: skip
    return frames


def gather_step(parts: dict[int, dict]) -> DdpStep:
    """The ranks' ``step`` messages of one step as one record, times from the earliest forward."""
    n = len(parts)
    by_rank = [parts[r] for r in range(n)]
    origin = min(p["t_forward"] for p in by_rank)
    first = by_rank[0]
    buckets = []
    for j, b in enumerate(first["buckets"]):
        starts = [p["buckets"][j]["start"] - origin for p in by_rank]
        finishes = [(p["buckets"][j]["finish"] or np.nan) - origin for p in by_rank]
        buckets.append(BucketSpan(b["index"], b["params"], b["numel"], b["bytes"], np.array(starts),
                                  np.array(finishes)))  # fmt: skip
    ready = np.full((n, len(first["ready"])), np.nan)
    for r, p in enumerate(by_rank):
        for j, t in enumerate(p["ready"]):
            ready[r, j] = np.nan if t is None else t - origin
    return DdpStep(
        step=first["step"], ranks=n, rows=[tuple(p["rows"]) for p in by_rank],
        losses=np.array([p["loss"] for p in by_rank]),
        forward=np.array([p["t_forward"] - origin for p in by_rank]),
        backward=np.array([[p["t_backward"] - origin, p["t_backward_done"] - origin] for p in by_rank]),
        ready=ready, buckets=buckets, ring_bucket=first["ring_bucket"], ring_numel=first["ring_numel"],
        transfers=[p["transfers"] for p in by_rank], ring_check=first["ring_check"],
        ring_vs_ddp=max(p["ring_vs_ddp"] for p in by_rank), one_process=first.get("one_process"),
        cost=first.get("cost"), ring_head=np.asarray(first.get("ring_result", np.zeros(0))),
    )  # fmt: skip
