"""Attention backends the model can plug in (see :class:`explorer.models.decoder.AttentionFn`).

- ``sdpa``: torch's scaled_dot_product_attention (the default).
- ``triton``: the FlashAttention-2 Triton kernel of :mod:`explorer.kernels.flash_attention` (compiled on a CUDA
  GPU, run by Triton's interpreter on CPU: correct but slow). Listed only where triton is installed; triton is
  imported when the backend is first chosen.
- ``torch-tiled``: the same algorithm tile by tile in torch (:mod:`explorer.kernels.tiled_torch`).

Both kernel backends take the model's arguments as they are: ``causal`` is bottom-right aligned in the model and
in the kernels alike (query i sees keys 0 .. S−T+i, what a KV cache needs while decoding), and ``mask`` (bool,
broadcastable to [B, H, T, S]) is passed straight through.
"""

from __future__ import annotations

from torch import Tensor

from ..errors import ExplorerError
from ..kernels.flash_attention import flash_attention, triton_available, triton_listed
from ..kernels.tiled_torch import tiled_attention
from ..models.decoder import AttentionFn, sdpa_attention

BLOCK_N = 64


def _block_m(T: int) -> int:
    """Q tile rows: 64, or fewer when there are fewer queries (decoding runs one query at a time)."""
    return min(64, max(16, 1 << (T - 1).bit_length()))


def triton_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool, mask: Tensor | None, scale: float, layer: int
) -> Tensor:
    """Backend ``triton``: the FlashAttention-2 Triton kernel (no trace)."""
    res = flash_attention(
        q, k, v, causal=causal, mask=mask, scale=scale, block_m=_block_m(q.shape[-2]), block_n=BLOCK_N
    )
    return res.o


def torch_tiled_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool, mask: Tensor | None, scale: float, layer: int
) -> Tensor:
    """Backend ``torch-tiled``: FlashAttention-2's tiles and online softmax in plain torch (no trace)."""
    res = tiled_attention(
        q, k, v, causal=causal, mask=mask, scale=scale, block_m=_block_m(q.shape[-2]), block_n=BLOCK_N
    )
    return res.o


BACKENDS: dict[str, AttentionFn] = {
    "sdpa": sdpa_attention,
    "triton": triton_attention,
    "torch-tiled": torch_tiled_attention,
}


def available_backends() -> list[str]:
    """Names in BACKENDS that can run here ("triton" needs triton, which is not imported for the list: the app's
    panel lists them at launch; see triton_listed)."""
    return [name for name in BACKENDS if name != "triton" or triton_listed()]


def use_backend(model, name: str) -> None:
    """Make ``model`` (a CausalLM) compute attention with backend ``name``; refuse unknown or unavailable ones."""
    if name not in BACKENDS:
        raise ExplorerError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "triton" and not triton_available():  # triton imported now, with the kernel
        raise ExplorerError(f"attention backend {name!r} is not available here (triton is not installed)")
    model.attention = BACKENDS[name]


def describe_backend(name: str, device: str) -> str:
    """How the backend actually runs, for status bars: the Triton kernel on a CPU runs in the interpreter."""
    if name == "triton" and not str(device).startswith("cuda"):
        return "triton (interpreter on CPU)"
    return name
