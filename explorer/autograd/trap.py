"""The in-place trap, run live on the model's own tensors (Qt-free). Each case runs the code it shows and keeps
torch's own error message when torch refuses:

1. ``expand`` then an in-place op: the expanded view reaches one element through many indices (stride 0), and
   torch refuses to write it ("unsupported operation: more than one element of the written-to tensor refers to a
   single memory location ...");
2. ``clone()`` first: a tensor of its own, contiguous; the same in-place op runs;
3. an in-place op on a tensor autograd saved: its ``_version`` moves past the one the saving node recorded, and
   the backward refuses ("one of the variables needed for gradient computation has been modified by an inplace
   operation: ... is at version 1; expected version 0 instead ...");
4. the fix of 3: the same product out of place; the backward runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .graph import Setup, layer_input
from .records import TensorMemory, TrapCase


def tensor_memory(label: str, t: Tensor) -> TensorMemory:
    """Storage, offset, sizes, strides, view-ness and version of ``t``."""
    overlapping = any(s == 0 and n > 1 for s, n in zip(t.stride(), t.shape, strict=True))
    return TensorMemory(label, tuple(t.shape), tuple(t.stride()), t.storage_offset(), t.untyped_storage().nbytes(),
                        t._is_view(), t._version, overlapping)  # fmt: skip


def _error(fn) -> str | None:
    try:
        fn()
    except RuntimeError as exc:
        return str(exc).strip()
    return None


def run_traps(setup: Setup) -> list[TrapCase]:
    """The four cases on the chosen layer (layer 0 for a whole-model setup): its real input hidden states and its
    MLP's gate projection."""
    m = setup.model
    block = m.model.layers[setup.layer or 0]
    x, _, _ = layer_input(setup)
    T = x.shape[1]
    row = x[0, 0].detach().clone()
    expanded = row.expand(T, row.shape[0])
    before = tensor_memory("row.expand(T, d)", expanded)
    err = _error(lambda: expanded.mul_(2))
    cases = [TrapCase("expand, then in-place", "row = hidden[0, 0].clone()\nwide = row.expand(T, d)\nwide.mul_(2)", err,
                      [tensor_memory("row = hidden[0, 0].clone()", row), before])]  # fmt: skip
    copy = expanded.clone()
    copy.mul_(2)
    cases.append(TrapCase("clone(), then in-place", "wide = row.expand(T, d).clone()\nwide.mul_(2)", None,
                          [before, tensor_memory("wide.clone() after mul_", copy)]))  # fmt: skip
    cases.append(_saved_case(block, x, inplace=True))
    cases.append(_saved_case(block, x, inplace=False))
    return cases


def _saved_case(block, x: Tensor, inplace: bool) -> TrapCase:
    """silu saves its input (the gate projection); scaling that input in place before the backward breaks it."""
    with torch.enable_grad():
        h = block.post_attention_layernorm(x)
        gate = block.mlp.gate_proj(h.detach().requires_grad_(True))
        act = F.silu(gate)
        at_save = tensor_memory("gate (saved by silu)", gate)
        if inplace:
            gate.mul_(2)
            code = "gate = mlp.gate_proj(h)\nact = F.silu(gate)   # saves gate\ngate.mul_(2)\nact.sum().backward()"
        else:
            gate = gate * 2
            code = "gate = mlp.gate_proj(h)\nact = F.silu(gate)   # saves gate\ngate = gate * 2\nact.sum().backward()"
        after = tensor_memory("gate after mul_" if inplace else "gate * 2 (a new tensor)", gate)
        err = _error(lambda: act.sum().backward())
    for p in block.parameters():
        p.grad = None
    name = "in-place on a saved tensor" if inplace else "out of place instead"
    return TrapCase(name, code, err, [at_save, after])
