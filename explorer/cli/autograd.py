"""``explorer autograd``: the real backward graph of a decoder layer (or the whole model), what it saves, the order
the engine runs it in, nn against functional and the in-place trap (see explorer.autograd)."""

from __future__ import annotations

import argparse
import json

from ..autograd.options import AUTOGRAD
from .common import add_model_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "autograd", help="the backward graph of a layer or the model: saved tensors, execution order, memory, in-place"
    )
    add_model_options(p, only=("model",))
    AUTOGRAD.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object: the graph, every step, the checks")
    p.set_defaults(func=run)


def kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def per_layer(layers: dict[int, int]) -> str:
    """'outside: 544.4 KiB, 1: 656.8 KiB'; past 8 layers their range and sum instead of each one."""
    outside = f"outside the layers: {kib(layers[-1])}" if -1 in layers else ""
    inside = {k: v for k, v in sorted(layers.items()) if k >= 0}
    if len(inside) <= 8:
        return ", ".join([*(f"{k}: {kib(v)}" for k, v in inside.items()), *([outside] if outside else [])])
    lo, hi = min(inside.values()), max(inside.values())
    first, last = min(inside), max(inside)
    text = f"layers {first}-{last}: {kib(lo)} to {kib(hi)} each, {kib(sum(inside.values()))} in all"
    return f"{text}; {outside}" if outside else text


def run(args: argparse.Namespace) -> int:
    from ..autograd.job import autograd_run
    from ..autograd.records import to_json
    from ..models.checkpoint import default_model_dirs, load_model

    values = AUTOGRAD.from_args(args)
    lm = load_model(args.model or default_model_dirs()["target"], dtype="float32", device="cpu")
    job = autograd_run(lm, values)
    steps = list(job.records())
    meta = job.meta
    if args.json:
        out = meta.to_json()
        out["steps"] = [to_json(s) for s in steps]
        print(json.dumps(out))
        return 0
    print_summary(meta, steps)
    return 0


def print_summary(meta, steps) -> None:
    g = meta.graph
    kinds: dict[str, int] = {}
    for n in g.nodes:
        kinds[n.short] = kinds.get(n.short, 0) + 1
    top = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:6])
    print(f"{g.scope} of {meta.model}: batch {g.tokens[0]} x {g.tokens[1]} tokens, {g.dtype}, loss {g.loss:.4f}")
    print(f"graph: {len(g.nodes)} nodes ({top}), {len(g.edges())} edges, {len(g.saved)} saved tensors, "
          f"{kib(g.saved_total)} saved (parameters not counted)")  # fmt: skip
    print("saved per layer: " + per_layer(g.layer_bytes()))
    for m in meta.memory:
        kept, forward, peak = kib(m.kept_bytes), kib(m.forward_peak_bytes), kib(m.peak_bytes)
        print(f"  {m.mode:10s} kept after forward {kept:>13s}  forward peak {forward:>13s}  with backward {peak:>13s}")
    slow = sorted(steps, key=lambda s: -s.seconds)[:3]
    print(
        "backward: "
        + f"{len(steps)} nodes ran, {meta.order_violations} edges out of order; slowest "
        + ", ".join(f"#{s.order + 1} {g.nodes[s.node].short} {s.seconds * 1e3:.2f} ms" for s in slow)
    )
    print(f"gradients vs torch.autograd.grad: max |difference| {meta.max_grad_diff:g}")
    f = meta.functional
    print(f"nn vs functional: {'same graph' if f.same_graph else 'different graphs'} ({len(f.module_kinds)} nodes), "
          f"max |gradient difference| {f.max_grad_diff:g} over {f.parameters} parameters")  # fmt: skip
    for case in meta.traps:
        print(f"in-place: {case.name}: " + (f"torch: {case.error.splitlines()[0]}" if case.error else "runs"))
