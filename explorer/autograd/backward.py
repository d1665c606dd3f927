"""The backward as the engine runs it (Qt-free): a pre-hook and a hook on every node of the captured graph record
the order the engine executes the nodes, the time each took and the gradients each produced, counted against the
fp16 range as the amp view counts them (the same bands, the same rounding; tested against amp.bands)."""

from __future__ import annotations

import math
import time
import weakref

import numpy as np
import torch
from torch import Tensor

from .graph import LiveGraph
from .records import AutogradGraph, BackwardStep


def run_backward(live: LiveGraph, *, deterministic: bool = False) -> list[BackwardStep]:
    """``loss.backward()`` with every node hooked; one step per executed node, in execution order. The parameters'
    ``.grad`` are left as the backward made them."""
    starts: dict[int, float] = {}
    steps: list[BackwardStep] = []
    stats = GradientStats()

    def pre(i: int):
        def hook(grad_outputs) -> None:
            starts[i] = time.perf_counter()

        return hook

    def post(i: int):
        def hook(grad_inputs, grad_outputs) -> None:
            seconds = 0.0 if deterministic else time.perf_counter() - starts.get(i, time.perf_counter())
            grads = [g for g in grad_inputs if isinstance(g, Tensor)] or [
                g for g in grad_outputs if isinstance(g, Tensor)
            ]
            steps.append(gradient_step(len(steps), i, seconds, grads, stats))

        return hook

    handles = []
    for i, node in enumerate(live.nodes):
        handles.append(node.register_prehook(pre(i)))
        handles.append(node.register_hook(post(i)))
    try:
        for _, p in live.params:
            p.grad = None
        live.loss.backward()
    finally:
        for h in handles:
            h.remove()
    return steps


# Upper edges (inclusive) of the fp16 bands of |g| in float32, as a cast to float16 rounds (amp.bands): exact zero;
# flushed up to 2^-25 (a tie, rounded to even: 0); subnormal below 1023.5·2^-24 (the tie that rounds up to the
# smallest normal, 2^-14); normal below 65520 (the tie that rounds up to inf); overflow up to float32's largest;
# then inf (NaN is counted with it).
_EDGES = torch.tensor([0.0, 2.0**-25, 1023.5 * 2.0**-24, 65520.0, torch.finfo(torch.float32).max], dtype=torch.float32)
_EDGES[2:4] = torch.nextafter(_EDGES[2:4], torch.zeros(2))


def fp16_band_counts(values: Tensor) -> np.ndarray:
    """Counts of ``values`` per band, in amp.bands.BANDS order (inf_nan, overflow, normal, subnormal, flushed,
    zero): one bucketize and one bincount, cheap for the thousands of small gradients of a backward (amp's
    BandCounter is built for a few large vectors and costs ~20 ms per call whatever the size)."""
    magnitude = torch.nan_to_num(values.detach().float().abs().reshape(-1), nan=math.inf, posinf=math.inf)
    band = torch.bucketize(magnitude, _EDGES.to(magnitude.device))  # 0 zero, 1 flushed, ... 5 inf/NaN
    return torch.bincount(band, minlength=6).cpu().numpy()[::-1].astype(np.int64)


class GradientStats:
    """fp16 band counts and squared norm per gradient tensor, each set of values counted once: a transpose, a view
    and the AccumulateGrad after a matmul hand on the very values the matmul produced (same storage, same version),
    and a whole model's weight gradients would otherwise be counted three times over."""

    def __init__(self):
        self._seen: dict[tuple, tuple[weakref.ref, np.ndarray, float]] = {}

    def of(self, g: Tensor) -> tuple[np.ndarray, float]:
        # the version moves with any in-place write (the engine accumulating into a buffer), the weak reference
        # says the storage was not freed and its address reused
        key = (g.data_ptr(), g.numel(), tuple(sorted(g.stride())), g.dtype, g._version)
        hit = self._seen.get(key)
        if hit is not None and hit[0]() is not None:
            return hit[1], hit[2]
        with torch.no_grad():
            bands = fp16_band_counts(g)
            squares = float(torch.linalg.vector_norm(g.detach().float())) ** 2
        self._seen[key] = (weakref.ref(g), bands, squares)
        return bands, squares


def gradient_step(order: int, node: int, seconds: float, grads: list[Tensor], stats: GradientStats) -> BackwardStep:
    """What one node produced: the first gradient's shape, the L2 norm over all, their fp16 band counts."""
    bands, squares = np.zeros(6, np.int64), 0.0
    for g in grads:
        b, sq = stats.of(g)
        bands, squares = bands + b, squares + sq
    norm = math.sqrt(squares) if math.isfinite(squares) else math.inf
    return BackwardStep(order, node, seconds, tuple(grads[0].shape) if grads else (), norm, bands)


def reference_gradients(live: LiveGraph) -> list[Tensor]:
    """``torch.autograd.grad`` of the same loss for the trained parameters (the graph is kept for the backward)."""
    return list(torch.autograd.grad(live.loss, [p for _, p in live.params], retain_graph=True))


def max_gradient_difference(live: LiveGraph, reference: list[Tensor]) -> float:
    """max |p.grad − torch.autograd.grad| over the trained parameters, after :func:`run_backward`."""
    worst = 0.0
    for (_, p), ref in zip(live.params, reference, strict=True):
        worst = max(worst, float((p.grad.float() - ref.float()).abs().max()))
    return worst


def topological_violations(graph: AutogradGraph, steps: list[BackwardStep]) -> list[tuple[int, int]]:
    """Edges (a → b: a sends b a gradient) that the recorded order ran b before a; [] for a valid order. Nodes that
    never ran count as violations of their edges."""
    position = {s.node: s.order for s in steps}
    missing = len(graph.nodes) + 1
    return [(a, b) for a, b in graph.edges() if position.get(a, missing) >= position.get(b, -1)]
