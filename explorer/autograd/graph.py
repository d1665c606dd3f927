"""The backward graph of one real forward, read from torch (Qt-free).

A forward of one decoder layer (or the whole model) of a trainable copy of the loaded model, on real tokens, ends in a
next-token cross-entropy loss. From ``loss.grad_fn`` the graph is walked through ``next_functions``; each node gets

* its module: every module's forward hook claims the nodes reachable from its outputs that no module has claimed
  yet, stopping at the grad_fns of its inputs, so children (which finish first) keep their own nodes and a parent
  keeps what its own code created (the functional calls between its children: ``F.silu``, the residual add);
* its source line: the forward ran in anomaly mode, which keeps each node's forward stack
  (``node.metadata["traceback_"]``); the last frame in the explorer's own code names the line;
* its saved tensors: the ``_saved_*`` attributes, each placed in storage: a parameter, the input, another saved
  tensor sharing the storage, or its own bytes (counted once, for the first node that keeps it).

For a single layer, the layer reads the real hidden states of the layers below it (computed without a graph) and its
output goes through the model's final norm and LM head, frozen, to the loss: the layer as if it were the last one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..amp.engine import default_text, sample_batch, text_tokens, trainable_copy
from ..errors import ExplorerError
from ..models.decoder import CausalLM, rope_cos_sin
from .records import AutogradGraph, GraphNode, ModuleInfo, SavedTensor

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ACCUMULATE = "torch::autograd::AccumulateGrad"
LayerFn = Callable[..., Tensor]  # (layer, x, cos, sin, attention) -> y


@dataclass
class Setup:
    """A trainable copy of the model and the batch one forward runs on. ``layer`` None: the whole model."""

    model: CausalLM
    ids: Tensor  # [B, T] input tokens
    targets: Tensor  # [B, T] next tokens
    layer: int | None
    dtype: str
    names: dict[int, str] = field(default_factory=dict)  # id(parameter) -> its name

    @property
    def scope(self) -> str:
        return "model" if self.layer is None else f"layer {self.layer}"

    def trained(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]


def make_setup(lm, layer: int | None, batch: int, seq_len: int, dtype: str = "float32", seed: int = 0,
               text: str | None = None) -> Setup:  # fmt: skip
    """A copy of ``lm`` in ``dtype`` whose chosen layer (or every parameter) needs gradients, and ``batch`` windows
    of ``seq_len`` real tokens of the text (default: the amp view's text)."""
    cfg = lm.config
    if layer is not None and not 0 <= layer < cfg.num_layers:
        raise ExplorerError(f"--layer must be in 0..{cfg.num_layers - 1} for {lm.name} (got {layer})")
    if seq_len > cfg.max_position_embeddings:
        raise ExplorerError(f"--seq-len must be at most {lm.name}'s context of {cfg.max_position_embeddings} tokens")
    model = trainable_copy(lm, "cpu").to(DTYPES[dtype])
    if layer is not None:
        model.requires_grad_(False)
        model.model.layers[layer].requires_grad_(True)
    tokens = text_tokens(lm.encode, text if text is not None else default_text(), seq_len)
    ids, targets = sample_batch(tokens, batch, seq_len, np.random.default_rng(seed))
    names = {id(p): n for n, p in model.named_parameters()}
    return Setup(model, ids, targets, layer, dtype, names)


def module_layer(layer: nn.Module, x: Tensor, cos: Tensor, sin: Tensor, attention) -> Tensor:
    return layer(x, cos, sin, attention, None, 0, None)


def layer_input(setup: Setup) -> tuple[Tensor, Tensor, Tensor]:
    """The chosen layer's real input (the hidden states after the layers below, no graph), and RoPE's tables."""
    m = setup.model
    pos = torch.arange(setup.ids.shape[1])[None].expand_as(setup.ids)
    with torch.no_grad():
        x = m.model.embed_tokens(setup.ids)
        cos, sin = rope_cos_sin(m.inv_freq, pos, x.dtype)
        for block in m.model.layers[: setup.layer or 0]:
            x = block(x, cos, sin, m.attention, None, 0, None)
    return x, cos, sin


def forward_loss(setup: Setup, layer_fn: LayerFn = module_layer, wrap=None) -> tuple[Tensor, Tensor | None]:
    """The loss of one forward and the leaf it starts from (the layer's input; None for the whole model).
    ``wrap(fn, *args)`` calls each layer (e.g. torch.utils.checkpoint)."""
    m = setup.model
    x, cos, sin = layer_input(setup)
    call = wrap or (lambda fn, *a: fn(*a))
    if setup.layer is None:
        leaf = None
        x = m.model.embed_tokens(setup.ids)
        for block in m.model.layers:
            x = call(layer_fn, block, x, cos, sin, m.attention)
    else:
        leaf = x.detach().requires_grad_(True)
        x = call(layer_fn, m.model.layers[setup.layer], leaf, cos, sin, m.attention)
    logits = m.lm_head(m.model.norm(x))
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), setup.targets.reshape(-1))
    return loss, leaf


# ---------------------------------------------------------------- walking the graph


def topological(loss: Tensor) -> list:
    """Every node behind ``loss``, each after all the nodes that send it a gradient (Kahn's order from the loss)."""
    pending: dict = {}
    stack, seen = [loss.grad_fn], {loss.grad_fn}
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            pending[child] = pending.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    order, ready = [], [loss.grad_fn]
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child, _ in node.next_functions:
            if child is not None:
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)
    return order


class ModuleClaims:
    """Forward hooks that give each autograd node to the innermost module whose forward created it: a module's
    hook walks back from its outputs to its inputs' grad_fns and takes every node no child took."""

    def __init__(self, model: nn.Module):
        self.owner: dict = {}
        self.stops: list[set] = []
        self.handles = []
        self.foreign = {name: len(m._forward_hooks) + len(m._forward_pre_hooks) for name, m in model.named_modules()}
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._pre))
            self.handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, module, args) -> None:
        self.stops.append({t.grad_fn for t in _tensors(args) if t.grad_fn is not None})

    def _post(self, name: str):
        def hook(module, args, out) -> None:
            stop = self.stops.pop()
            stack = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
            seen = set(stop)
            while stack:
                node = stack.pop()
                if node is None or node in seen or node.name() == ACCUMULATE:
                    continue
                seen.add(node)
                self.owner.setdefault(node, name)  # a child's nodes stay its own; walk on through them
                stack.extend(child for child, _ in node.next_functions)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _tensors(value) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def source_line(node) -> str | None:
    """'decoder.py:399 forward': the last frame of the node's forward stack in the explorer's own code."""
    frames = node.metadata.get("traceback_") if hasattr(node, "metadata") else None
    for frame in reversed(frames or []):
        m = _FRAME.search(frame)
        if m and "/explorer/" in m.group(1) and "site-packages" not in m.group(1):
            return f"{m.group(1).rpartition('/')[2]}:{m.group(2)} {m.group(3)}"
    return None


def layer_of(module: str) -> int:
    m = re.match(r"model\.layers\.(\d+)(\.|$)", module)
    return int(m.group(1)) if m else -1


@dataclass
class LiveGraph:
    """The graph as torch holds it (for the backward): the loss, the nodes in the record's order, the parameters."""

    loss: Tensor
    nodes: list
    leaf: Tensor | None
    params: list[tuple[str, nn.Parameter]]


def capture(setup: Setup, layer_fn: LayerFn = module_layer) -> tuple[AutogradGraph, LiveGraph]:
    """One forward with module claims and anomaly mode's stacks, and the graph read back from torch."""
    claims = ModuleClaims(setup.model)
    try:
        with torch.autograd.set_detect_anomaly(True, check_nan=False):
            loss, leaf = forward_loss(setup, layer_fn)
    finally:
        claims.close()
    order = topological(loss)
    index = {node: i for i, node in enumerate(order)}
    nodes = []
    for i, node in enumerate(order):
        module = claims.owner.get(node, "")
        variable = None
        if node.name() == ACCUMULATE:
            var = node.variable
            variable = "input" if var is leaf else setup.names.get(id(var), "leaf")
            module = variable.rpartition(".")[0] if variable not in ("input", "leaf") else ""
        inputs = [index[c] for c, _ in node.next_functions if c is not None]
        nodes.append(GraphNode(i, node.name(), module, source_line(node), inputs, variable=variable,
                               layer=layer_of(module)))  # fmt: skip
    saved = read_saved(order, nodes, setup, leaf)
    graph = AutogradGraph(setup.scope, float(loss.item()), tuple(setup.ids.shape), setup.dtype, nodes, saved,
                          module_tree(setup.model, nodes, claims.foreign))  # fmt: skip
    return graph, LiveGraph(loss, order, leaf, setup.trained())


def read_saved(order: list, nodes: list[GraphNode], setup: Setup, leaf: Tensor | None) -> list[SavedTensor]:
    """Every ``_saved_*`` tensor of every node, placed in storage; fills each node's ``saved`` and ``saved_bytes``."""
    params = {p.untyped_storage().data_ptr(): n for n, p in setup.model.named_parameters()}
    inputs = {leaf.untyped_storage().data_ptr()} if leaf is not None else set()
    first: dict[int, str] = {}
    out: list[SavedTensor] = []
    for node, rec in zip(order, nodes, strict=True):
        for attr in sorted(a for a in dir(node) if a.startswith("_saved_")):
            try:
                value = getattr(node, attr)
            except RuntimeError:  # a saved tensor already freed (cannot happen before backward)
                continue
            for t in _tensors(value):
                storage = t.untyped_storage()
                ptr, nbytes = storage.data_ptr(), storage.nbytes()
                name = attr.removeprefix("_saved_")
                if ptr in params:
                    alias = f"parameter {params[ptr]}"
                elif ptr in inputs:
                    alias = "input"
                elif ptr in first and ptr:
                    alias = first[ptr]
                else:
                    alias = None
                    first[ptr] = f"#{rec.index} {rec.short}'s {name}"
                    rec.saved_bytes += nbytes
                rec.saved.append(len(out))
                out.append(SavedTensor(rec.index, name, tuple(t.shape), str(t.dtype).removeprefix("torch."),
                                       t.numel() * t.element_size(), nbytes, alias, tuple(t.stride()),
                                       t.storage_offset(), t._version))  # fmt: skip
    return out


def module_tree(model: nn.Module, nodes: list[GraphNode], foreign: dict[str, int]) -> list[ModuleInfo]:
    """Every module of the model in definition order, with the nodes it created (the root none: the runs call its
    layers, not its forward; the loss is computed outside every module)."""
    by_module: dict[str, list[int]] = {}
    for n in nodes:
        by_module.setdefault(n.module, []).append(n.index)
    out = []
    for name, m in model.named_modules():
        out.append(ModuleInfo(name, type(m).__name__, sum(p.numel() for p in m.parameters(recurse=False)),
                              sum(b.numel() for b in m.buffers(recurse=False)), foreign.get(name, 0),
                              by_module.get(name, []) if name else [], name.count(".") + 1 if name else 0))  # fmt: skip
    return out
