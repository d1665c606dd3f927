"""nn against functional (Qt-free): the decoder layer written with ``torch.nn.functional`` calls on the layer's own
parameters. An ``nn.Module`` holds parameters, buffers and mode and calls the same functions, so both forwards
build the same autograd nodes and the same gradients; :func:`compare` checks it on the loaded model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.decoder import apply_rope
from .graph import Setup, forward_loss, topological
from .records import FunctionalCheck


def rms_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """RMSNorm as the module computes it with gradients on: F.rms_norm in float32 (cast back for other dtypes)."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.eps)
    return norm.weight * F.rms_norm(x.float(), norm.weight.shape, None, norm.eps).to(x.dtype)


def linear(module: nn.Linear, x: Tensor) -> Tensor:
    return F.linear(x, module.weight, module.bias)


def functional_layer(layer: nn.Module, x: Tensor, cos: Tensor, sin: Tensor, attention=None) -> Tensor:
    """The decoder layer (pre-norm attention, then pre-norm SwiGLU MLP, each added to the residual) in functional
    calls only; ``attention`` is ignored: torch's SDPA is called directly, causal, as the model's default does."""
    a, mlp = layer.self_attn, layer.mlp
    cfg, hd = a.cfg, a.cfg.head_dim
    B, T, _ = x.shape
    h = rms_norm(layer.input_layernorm, x)
    q = linear(a.q_proj, h).view(B, T, -1, hd)
    k = linear(a.k_proj, h).view(B, T, -1, hd)
    v = linear(a.v_proj, h).view(B, T, -1, hd)
    if cfg.qk_norm:
        q, k = rms_norm(a.q_norm, q), rms_norm(a.k_norm, k)
    q = apply_rope(q.transpose(1, 2), cos, sin)
    k = apply_rope(k.transpose(1, 2), cos, sin)
    v = v.transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, scale=hd**-0.5, enable_gqa=q.shape[1] != k.shape[1])
    x = x + linear(a.o_proj, out.transpose(1, 2).reshape(B, T, -1))
    h = rms_norm(layer.post_attention_layernorm, x)
    return x + linear(mlp.down_proj, F.silu(linear(mlp.gate_proj, h)) * linear(mlp.up_proj, h))


def graph_shape(loss: Tensor) -> tuple[list[str], list[tuple[int, int]]]:
    """Node kinds in topological order from the loss and the edges between them (by position)."""
    order = topological(loss)
    index = {node: i for i, node in enumerate(order)}
    edges = [(i, index[c]) for i, node in enumerate(order) for c, _ in node.next_functions if c is not None]
    return [node.name() for node in order], edges


def compare(setup: Setup) -> FunctionalCheck:
    """The chosen layer's loss through its modules and through :func:`functional_layer`: node kinds, edges and
    gradients. A whole-model setup compares every layer."""
    params = [p for _, p in setup.trained()]
    results = []
    for layer_fn in (None, functional_layer):
        loss, _ = forward_loss(setup, layer_fn) if layer_fn else forward_loss(setup)
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        results.append((graph_shape(loss), grads))
    (m_kinds, m_edges), m_grads = results[0]
    (f_kinds, f_edges), f_grads = results[1]
    diff = max((float((a - b).abs().max()) for a, b in zip(m_grads, f_grads, strict=True)), default=0.0)
    return FunctionalCheck(m_kinds, f_kinds, m_kinds == f_kinds and m_edges == f_edges, diff, len(params))
