"""The one way an autograd run is computed (Qt-free): the autograd view, a tour's recording and ``explorer
autograd`` all start here, from the options schema's values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..amp.engine import check_training_memory
from ..jobs import Job
from ..session import Session
from .backward import max_gradient_difference, reference_gradients, run_backward, topological_violations
from .functional import compare
from .graph import capture, make_setup
from .memory import compare_modes
from .options import AUTOGRAD
from .records import AutogradGraph, BackwardStep, FunctionalCheck, MemoryMode, TrapCase, to_json
from .trap import run_traps


@dataclass
class AutogradRunMeta:
    """What an autograd run found: the graph and the checks before the first backward step is yielded, memory, nn
    vs functional and the in-place cases before the last."""

    model: str
    values: dict[str, Any]
    graph: AutogradGraph | None = None
    memory: list[MemoryMode] = field(default_factory=list)
    functional: FunctionalCheck | None = None
    traps: list[TrapCase] = field(default_factory=list)
    max_grad_diff: float | None = None  # max |p.grad − torch.autograd.grad| after the hooked backward
    order_violations: int | None = None  # graph edges the recorded order ran backwards (0: a topological order)

    def to_json(self) -> dict[str, Any]:
        g = self.graph
        out: dict[str, Any] = {"model": self.model, "settings": dict(self.values)}
        if g is not None:
            out["graph"] = {
                "scope": g.scope, "loss": g.loss, "tokens": list(g.tokens), "dtype": g.dtype,
                "saved_bytes": g.saved_total,
                "saved_bytes_by_layer": {str(k): v for k, v in sorted(g.layer_bytes().items())},
                "nodes": [{**to_json(n), "short": n.short} for n in g.nodes],
                "saved": [to_json(s) for s in g.saved],
                "modules": [to_json(m) for m in g.modules],
            }  # fmt: skip
        out["memory"] = [to_json(m) for m in self.memory]
        out["functional"] = to_json(self.functional) if self.functional else None
        out["traps"] = [to_json(t) for t in self.traps]
        out["max_grad_diff"] = self.max_grad_diff
        out["order_violations"] = self.order_violations
        return out


def follow_model(values: dict[str, Any], config: Any) -> dict[str, Any]:
    """``values`` with the layer at most the model's last (the view and tours follow the model; the CLI refuses)."""
    return {k: min(v, config.num_layers - 1) if k == "layer" else v for k, v in values.items()}


def autograd_run(lm, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    """Capture the graph and run the hooked backward, then compare nn with functional, measure memory and run the
    in-place cases: one :class:`BackwardStep` record per executed node, in the engine's order; the metadata is
    whole when the last one arrives."""
    given = {**AUTOGRAD.defaults(), **values}
    v = AUTOGRAD.check({k: value for k, value in given.items() if not AUTOGRAD[k].display})  # no drawing choices
    meta = AutogradRunMeta(model=str(lm.path), values=dict(v))

    def records() -> Iterator[BackwardStep]:
        layer = v["layer"] if v["scope"] == "layer" else None
        # the trainable copy with its gradients and activations (AdamW's moments counted too: a generous bound)
        check_training_memory(lm.config, v["batch"], v["seq_len"], "cpu", 0 if layer is None else 1)
        setup = make_setup(lm, layer, v["batch"], v["seq_len"], v["dtype"], v["seed"])
        meta.graph, live = capture(setup)
        reference = reference_gradients(live)
        steps = run_backward(live, deterministic=deterministic)
        meta.max_grad_diff = max_gradient_difference(live, reference)
        meta.order_violations = len(topological_violations(meta.graph, steps))
        del live, reference
        for _, p in setup.trained():
            p.grad = None
        # the graph and the steps first (a view draws them while the rest computes, and a cancel lands between
        # steps); the last step once memory, nn vs functional and the in-place cases are in the metadata too
        yield from steps[:-1]
        meta.functional = compare(setup)  # each part leaves the copy's parameters and .grad as it found them
        meta.memory = compare_modes(setup)
        meta.traps = run_traps(setup)
        yield steps[-1]

    return Job(meta, records)


def autograd_job(session: Session, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    """The autograd view's run (explorer.jobs): a trainable copy of the session's target, on the CPU."""
    return autograd_run(session.target, values, deterministic=deterministic)
