"""What the autograd engine emits: the graph read from torch, each backward step as the engine ran it, the memory
comparison, nn against functional, and the in-place cases. Plain dataclasses of ints, strings and numpy arrays."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class SavedTensor:
    """One tensor a node keeps for its backward (``node._saved_<name>``)."""

    node: int  # index of the node that saved it
    name: str  # the attribute without ``_saved_``: "self", "mat2", "result", ...
    shape: tuple[int, ...]
    dtype: str
    bytes: int  # numel × element size of this view
    storage_bytes: int  # bytes of the storage it views (what keeping it keeps alive)
    alias: str | None  # "parameter NAME", "input", or "#N Mm's self" (same storage, saved first there); None: its own
    stride: tuple[int, ...] = ()
    offset: int = 0  # storage offset, in elements
    version: int = 0  # its _version when read back (the version the node recorded at save time)


@dataclass
class GraphNode:
    """One autograd node (a ``torch.autograd.graph.Node``) of the graph behind the loss."""

    index: int
    kind: str  # node.name(): "MmBackward0", "torch::autograd::AccumulateGrad"
    module: str  # the innermost module whose forward created it ("" outside every module: the loss)
    source: str | None  # "decoder.py:399 forward", from anomaly mode's forward traceback
    inputs: list[int]  # the nodes its gradients flow to (next_functions), in torch's order
    saved: list[int] = field(default_factory=list)  # indices into AutogradGraph.saved
    saved_bytes: int = 0  # storage bytes this node is the first to keep (parameters excluded)
    variable: str | None = None  # AccumulateGrad: the leaf it accumulates into (a parameter name or "input")
    layer: int = -1  # the decoder layer that created it, -1 outside the layers

    @property
    def short(self) -> str:
        """'Mm', 'AccumulateGrad', 'ScaledDotProductFlashAttentionForCpu': the kind without namespace and suffix."""
        name = self.kind.rpartition("::")[2]
        return name[: -len("Backward0")] if name.endswith("Backward0") else name.removesuffix("Backward1")


@dataclass
class ModuleInfo:
    """One nn.Module of the model, with the nodes its forward created (its own, not its children's)."""

    name: str  # "" for the root
    kind: str  # class name
    parameters: int  # parameters it holds directly (numel)
    buffers: int  # buffers it holds directly (numel)
    hooks: int  # forward hooks and pre-hooks registered on it besides the explorer's
    nodes: list[int] = field(default_factory=list)
    depth: int = 0


@dataclass
class AutogradGraph:
    """The graph one forward built: nodes in discovery order from the loss (node 0 is the loss's grad_fn)."""

    scope: str  # "layer 3" or "model"
    loss: float
    tokens: tuple[int, int]  # batch, seq_len
    dtype: str
    nodes: list[GraphNode]
    saved: list[SavedTensor]
    modules: list[ModuleInfo]

    @property
    def saved_total(self) -> int:
        return sum(n.saved_bytes for n in self.nodes)

    def edges(self) -> list[tuple[int, int]]:
        return [(n.index, j) for n in self.nodes for j in n.inputs]

    def layer_bytes(self) -> dict[int, int]:
        """Saved bytes per decoder layer (-1: outside the layers)."""
        out: dict[int, int] = {}
        for n in self.nodes:
            out[n.layer] = out.get(n.layer, 0) + n.saved_bytes
        return out


@dataclass
class BackwardStep:
    """One node as the engine ran it during ``loss.backward()``."""

    order: int  # 0-based position in the execution order
    node: int  # index into AutogradGraph.nodes
    seconds: float  # from the node's pre-hook to its hook (0 in deterministic runs)
    shape: tuple[int, ...]  # shape of the first gradient it produced
    norm: float  # L2 norm over every gradient it produced
    bands: np.ndarray  # [len(amp.bands.BANDS)] counts of those values against the fp16 range


@dataclass
class MemoryMode:
    """One way to run the same forward (and backward): what it keeps and its measured peak."""

    mode: str  # "autograd", "checkpoint", "no_grad"
    kept_bytes: int  # tensor bytes still allocated after the forward returned (the output excluded)
    forward_peak_bytes: int  # highest tensor bytes allocated during the forward (measured)
    peak_bytes: int  # highest during forward and backward: the backward adds the parameters' gradients
    saved_bytes: int  # bytes of saved tensors autograd's pack hook saw (unique storages, parameters excluded)


@dataclass
class TensorMemory:
    """How a tensor sits in memory: what the tensor-memory panel shows."""

    label: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    storage_bytes: int
    is_view: bool
    version: int
    overlapping: bool  # some element is reached by two index tuples (a zero stride): in-place writes are refused


@dataclass
class TrapCase:
    """One in-place case run live on the model's tensors: the code, torch's own error (None: it ran)."""

    name: str
    code: str
    error: str | None
    tensors: list[TensorMemory]


@dataclass
class FunctionalCheck:
    """The layer through its nn.Modules against the same layer written with torch.nn.functional."""

    module_kinds: list[str]  # node kinds in discovery order from the loss
    functional_kinds: list[str]
    same_graph: bool  # same kinds and the same edges
    max_grad_diff: float  # max |grad_module − grad_functional| over the layer's parameters
    parameters: int  # parameters compared


def to_json(record) -> dict:
    """A record as JSON-ready values (numpy arrays as lists)."""
    out = asdict(record)
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
    return out
