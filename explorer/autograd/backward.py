"""The backward as the engine runs it (Qt-free): a pre-hook and a hook on every node of the captured graph record
the order the engine executes the nodes, the time each took and the gradients each produced, counted against the
fp16 range as the amp view counts them."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from ..amp.bands import BandCounter
from .graph import LiveGraph
from .records import AutogradGraph, BackwardStep


def run_backward(live: LiveGraph, *, deterministic: bool = False) -> list[BackwardStep]:
    """``loss.backward()`` with every node hooked; one step per executed node, in execution order. The parameters'
    ``.grad`` are left as the backward made them."""
    counter = BandCounter()
    starts: dict[int, float] = {}
    steps: list[BackwardStep] = []

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
            steps.append(gradient_step(len(steps), i, seconds, grads, counter))

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


def gradient_step(order: int, node: int, seconds: float, grads: list[Tensor], counter: BandCounter) -> BackwardStep:
    """What one node produced: the first gradient's shape, the L2 norm over all, their fp16 band counts."""
    if not grads:
        return BackwardStep(order, node, seconds, (), 0.0, np.zeros(6, np.int64))
    with torch.no_grad():
        flat = torch.cat([g.detach().float().reshape(-1) for g in grads])
        norm = float(torch.linalg.vector_norm(flat))
        bands = counter.count(flat, (flat.numel(),))[0][0]
    return BackwardStep(order, node, seconds, tuple(grads[0].shape), norm if math.isfinite(norm) else math.inf, bands)


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
