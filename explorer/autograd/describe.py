"""The autograd view's words (Qt-free): the header, a node's card, the in-place cases, nn against functional, the
memory caption. Every figure comes from the run's records."""

from __future__ import annotations

from html import escape

from ..amp.bands import BANDS
from .records import AutogradGraph, BackwardStep, FunctionalCheck, GraphNode, MemoryMode, TrapCase

# node kinds by what they do, in legend order; colours are the view's
GROUPS = ("matmul", "elementwise", "reduction", "view", "loss", "leaf", "layer")
_MATMUL = ("Mm", "Bmm", "Addmm", "Linear", "ScaledDotProduct", "Embedding")
_VIEW = ("View", "UnsafeView", "Transpose", "T", "Expand", "Permute", "Reshape", "Alias", "Roll", "Slice", "Select",
         "Split", "Cat", "Stack", "Squeeze", "Unsqueeze", "ToCopy", "Clone", "Index")  # fmt: skip
_REDUCE = ("Mean", "Sum", "Max", "Min", "Norm", "Amax")
_LOSS = ("NllLoss", "LogSoftmax", "Softmax", "CrossEntropy")


def kind_group(short: str) -> str:
    """'Mm' -> 'matmul', 'Silu' -> 'elementwise', 'AccumulateGrad' -> 'leaf', 'layer 3' -> 'layer'."""
    if short.startswith("layer "):
        return "layer"
    if short == "AccumulateGrad":
        return "leaf"
    if short.startswith(_MATMUL):
        return "matmul"
    if short in _LOSS:
        return "loss"
    if short in _REDUCE:
        return "reduction"
    if short in _VIEW or short.startswith(("Split", "Unsafe")):
        return "view"
    return "elementwise"


def label(short: str) -> str:
    """A node's name short enough to write beside it: 'ScaledDotProductFlashAttentionForCpu' -> 'SDPA (flash)'."""
    if short.startswith("ScaledDotProduct"):
        kind = short.removeprefix("ScaledDotProduct").split("Attention")[0].lower()
        return f"SDPA ({kind})" if kind else "SDPA"
    return short


def count(n: int) -> str:
    """12,345,678 -> '12.3M', 786,944 -> '787K', 256 -> '256'."""
    if n >= 10**6:
        return f"{n / 10**6:.1f}M"
    return f"{n / 10**3:.0f}K" if n >= 10**4 else str(n)


def size(n: int) -> str:
    """Bytes as people read them: 512 B, 12.0 KiB, 3.4 MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


def header_html(graph: AutogradGraph, step: BackwardStep | None, steps: int, max_grad_diff: float | None,
                violations: int | None, muted: str, seconds: bool = True) -> str:  # fmt: skip
    """Two lines: what ran and the checks; then the step shown."""
    tail = "" if max_grad_diff is None else (
        f" · gradients = torch.autograd.grad: max |Δ| {max_grad_diff:g}"
        f" · order {'topological' if violations == 0 else f'{violations} edges out of order'}"
    )  # fmt: skip
    first = (f"<b>{escape(graph.scope)}</b> · batch {graph.tokens[0]}×{graph.tokens[1]} tokens · {graph.dtype} · "
             f"loss {graph.loss:.4f} · {len(graph.nodes)} nodes, {len(graph.saved)} saved tensors, "
             f"{size(graph.saved_total)} saved{tail}")  # fmt: skip
    if step is None:
        return first
    node = graph.nodes[step.node]
    where = escape(node.module or "outside every module")
    timing = f" · {step.seconds * 1e3:.3f} ms" if seconds else ""
    second = (f"backward step {step.order + 1} of {steps}: <b>{escape(node.kind)}</b> "
              f"<span style='color:{muted}'>({where}{', ' + escape(node.source) if node.source else ''})</span>"
              f" → gradient {list(step.shape)} ‖g‖ {step.norm:.3g}{timing}")  # fmt: skip
    return f"{first}<br>{second}"


def bands_text(step: BackwardStep) -> str:
    """'normal 7,903 · subnormal 289': the fp16 bands the gradient's values fall in (empty bands left out)."""
    return " · ".join(f"{b.replace('_', '/')} {int(c):,}" for b, c in zip(BANDS, step.bands, strict=True) if c)


def node_html(graph: AutogradGraph, node: GraphNode, step: BackwardStep | None) -> str:
    """A node's card: kind, module, source, inputs, each saved tensor with where its storage comes from."""
    lines = [f"<b>#{node.index} {escape(node.kind)}</b> — {escape(node.module or 'outside every module')}"]
    if node.source:
        lines.append(f"created at {escape(node.source)}")
    if node.variable:
        lines.append(f"accumulates into <b>{escape(node.variable)}</b>.grad")
    if node.inputs:
        kinds = ", ".join(f"#{i} {graph.nodes[i].short}" for i in node.inputs)
        lines.append(f"sends gradients to {escape(kinds)}")
    if step is not None:
        lines.append(f"ran as step {step.order + 1}: gradient {list(step.shape)}, ‖g‖ {step.norm:.4g}; fp16: "
                     f"{bands_text(step)}")  # fmt: skip
    if node.saved:
        items = "".join(
            f"<li><b>{escape(s.name)}</b> {list(s.shape)} {s.dtype}, {size(s.bytes)} · strides {list(s.stride)} · "
            f"offset {s.offset} · _version {s.version} · "
            f"{'same storage as ' + escape(s.alias) if s.alias else 'its own storage, ' + size(s.storage_bytes)}</li>"
            for s in (graph.saved[j] for j in node.saved)
        )
        lines.append(f"keeps {size(node.saved_bytes)} of its own:<ul>{items}</ul>")
    else:
        lines.append("saves no tensor")
    return "<br>".join(lines)


def trap_html(cases: list[TrapCase], error_color: str, ok_color: str) -> str:
    """Each case: its code, torch's answer, and how the tensors sit in memory (sizes, strides, offset, version)."""
    parts = []
    for i, case in enumerate(cases, 1):
        answer = (f"<span style='color:{error_color}'>RuntimeError: {escape(case.error)}</span>" if case.error
                  else f"<span style='color:{ok_color}'>runs</span>")  # fmt: skip
        items = "".join(_tensor_item(t) for t in case.tensors)
        parts.append(f"<b>{i}. {escape(case.name)}</b><pre>{escape(case.code)}</pre>{answer}<ul>{items}</ul>")
    return "<br>".join(parts)


def _tensor_item(t) -> str:
    overlap = " (stride 0: one element, many indices)" if t.overlapping else ""
    return (f"<li><b>{escape(t.label)}</b>: sizes {list(t.shape)} · strides {list(t.stride)}{overlap} · offset "
            f"{t.offset} · storage {size(t.storage_bytes)} · {'a view' if t.is_view else 'not a view'} · _version "
            f"{t.version}</li>")  # fmt: skip


LATER = "Measured after the backward's steps: they arrive with the last one."
SIDE_BY_SIDE_ROWS = 120  # a whole model has thousands of nodes: the first ones side by side, the rest counted


def functional_html(check: FunctionalCheck, ok_color: str, error_color: str) -> str:
    """The verdict, then both graphs' nodes side by side in topological order from the loss (a differing row red)."""
    verdict = (f"<span style='color:{ok_color}'>the same graph</span>" if check.same_graph
               else f"<span style='color:{error_color}'>different graphs</span>")  # fmt: skip
    head = (f"nn.Module forward and the same layer in torch.nn.functional calls build {verdict}: "
            f"{len(check.module_kinds)} against {len(check.functional_kinds)} nodes; the gradients of the "
            f"{check.parameters} parameters differ by at most {check.max_grad_diff:g}. An nn.Module holds "
            "parameters, buffers and mode (training) and calls F.linear, F.rms_norm, F.silu, "
            "F.scaled_dot_product_attention: the nodes come from those calls, not from the modules.")  # fmt: skip
    pairs = list(zip(check.module_kinds, check.functional_kinds, strict=False))
    rows = "".join(
        f"<tr{'' if a == b else f' style=color:{error_color}'}><td>{i}</td><td>{escape(_bare(a))}</td>"
        f"<td>{escape(_bare(b))}</td></tr>"
        for i, (a, b) in enumerate(pairs[:SIDE_BY_SIDE_ROWS])
    )
    more = len(pairs) - SIDE_BY_SIDE_ROWS
    rest = f"<br>… {more} more rows, {sum(a != b for a, b in pairs[SIDE_BY_SIDE_ROWS:])} differing" if more > 0 else ""
    return f"{head}<table cellspacing=3><tr><th>#</th><th>nn.Module</th><th>functional</th></tr>{rows}</table>{rest}"


def _bare(kind: str) -> str:
    return kind.rpartition("::")[2].removesuffix("Backward0").removesuffix("Backward1")


def memory_caption(graph: AutogradGraph, modes: list[MemoryMode]) -> str:
    """The memory plot's figures in words: kept and peak per mode, the graph walk's sum beside them."""
    if not modes:
        return f"Saved tensors found on the graph: {size(graph.saved_total)}. {LATER}"
    names = " / ".join(m.mode.replace("_", "-") for m in modes)
    kept = " / ".join(size(m.kept_bytes) for m in modes)
    peaks = " / ".join(size(m.forward_peak_bytes) for m in modes)
    text = f"{names}: kept after the forward {kept}; forward peak {peaks}"
    by = {m.mode: m for m in modes}
    grad, ckpt = by.get("autograd"), by.get("checkpoint")
    if grad is not None and ckpt is not None and grad.kept_bytes:
        text += f" (checkpointing keeps {ckpt.kept_bytes / grad.kept_bytes:.0%})"
    return f"{text}. Saved tensors found on the graph: {size(graph.saved_total)}."
