"""The graph laid out for drawing (Qt-free): nodes in columns by their distance from the loss, the loss at the
right so that the forward reads left to right and the backward runs right to left; a whole model's decoder layers
collapsed to one box each unless expanded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import AutogradGraph


@dataclass
class Layout:
    """What the graph panel draws: one entry per box (a node, or a collapsed layer)."""

    labels: list[str]  # "Mm", "layer 3"
    members: list[list[int]]  # graph nodes in each box
    layer: list[int]  # the collapsed layer of each box, -1 for a single node
    x: np.ndarray  # column (0: farthest from the loss)
    y: np.ndarray  # row within the column
    saved_bytes: np.ndarray  # bytes the box's nodes keep
    edges: np.ndarray  # [E, 2] box indices, gradient flowing from the first to the second
    box_of: np.ndarray  # [nodes] the box each graph node is in


def lay_out(graph: AutogradGraph, expanded: set[int] | frozenset[int] = frozenset(), collapse: bool = True) -> Layout:
    """Boxes for ``graph``: with ``collapse``, every decoder layer not in ``expanded`` becomes one box."""
    box_of = np.empty(len(graph.nodes), np.int64)
    labels: list[str] = []
    members: list[list[int]] = []
    layers: list[int] = []
    layer_box: dict[int, int] = {}
    for n in graph.nodes:  # graph order is topological from the loss, so boxes are too
        if collapse and n.layer >= 0 and n.layer not in expanded:
            if n.layer not in layer_box:
                layer_box[n.layer] = len(labels)
                labels.append(f"layer {n.layer}")
                members.append([])
                layers.append(n.layer)
            box = layer_box[n.layer]
        else:
            box = len(labels)
            labels.append(n.short)
            members.append([])
            layers.append(-1)
        box_of[n.index] = box
        members[box].append(n.index)
    pairs = {(int(box_of[a]), int(box_of[b])) for a, b in graph.edges() if box_of[a] != box_of[b]}
    edges = np.array(sorted(pairs), np.int64).reshape(-1, 2)
    depth = np.zeros(len(labels), np.int64)
    for a, b in sorted(pairs, key=lambda e: e[0]):  # boxes are numbered in topological order
        depth[b] = max(depth[b], depth[a] + 1)
    x = (depth.max(initial=0) - depth).astype(np.float64)
    y = _rows(depth, edges)
    saved = np.array([sum(graph.nodes[i].saved_bytes for i in m) for m in members], np.int64)
    return Layout(labels, members, layers, x, y, saved, edges, box_of)


def _rows(depth: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows within each column, ordered by the mean row of the boxes that send them gradients (fewer crossings),
    centred on 0."""
    y = np.zeros(len(depth), np.float64)
    parents: dict[int, list[int]] = {}
    for a, b in edges:
        parents.setdefault(int(b), []).append(int(a))
    for d in range(int(depth.max(initial=0)) + 1):
        column = np.nonzero(depth == d)[0]
        keys = [np.mean([y[p] for p in parents[int(i)]]) if int(i) in parents else 0.0 for i in column]
        for row, i in enumerate(column[np.argsort(keys, kind="stable")]):
            y[i] = row - (len(column) - 1) / 2
    return y
