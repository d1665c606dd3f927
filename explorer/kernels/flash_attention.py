"""A FlashAttention-2 forward kernel in Triton that can report its own online-softmax state.

One program per (Q block, batch·head) keeps its Q tile in registers and walks the KV tiles left to right:

    s     = q·kᵀ·scale                      (the kernel works in base 2: s·log2 e, then exp2)
    m_new = max(m, rowmax(s))
    alpha = exp(m − m_new)                  rescales what was accumulated so far
    p     = exp(s − m_new)
    l     = l·alpha + rowsum(p)
    acc   = acc·alpha + p·v
    after the last tile: O = acc / l,  LSE = m + log l

Causal attention (bottom-right aligned: query i sees keys 0 .. S−T+i) is a matter of loop *bounds*: the tiles
entirely above the diagonal are never visited, the tiles entirely below it run without any mask, and only the
diagonal band (and the partial last KV tile) is masked, as in FA2. An explicit boolean mask, broadcastable to
[B, H, T, S] (so [T, S], [B, 1, T, S], [1, H, T, S], ... all work; broadcast dims cost no memory), sends every
tile through the masked path. A row that may attend to nothing gets output 0 and LSE −inf, never NaN: like FA2,
a −inf running max is treated as 0 when scaling.

With the compile-time flag ``TRACE`` the very same kernel also stores, after every tile it visits, each row's
m (natural-log units), l and alpha, and the tile's state (1 visited, 2 visited with masked entries). With
TRACE=False that code is not compiled at all.

GQA: query head h reads kv head h // (H // Hkv). head_dim up to 256 (padded to a power of two >= 16 inside the
kernel with masked loads; the tests cover 16, 40, 64 and 100). T and S need not be multiples of the blocks.
float32 / float16 / bfloat16 inputs, float32 accumulation. On a GPU an fp32 ``tl.dot`` is asked for IEEE
precision (not TF32) so that results match the fp32 reference; fp16/bf16 use the tensor cores and round p to
the input dtype before p·v, as FA2 does.

Without CUDA the kernel runs in Triton's interpreter (numpy, one program after another): this module sets
``TRITON_INTERPRET=1`` before triton is imported when no GPU is present (the kernel's Triton code, in
:mod:`explorer.kernels.flash_triton`, is imported with triton the first time the kernel is asked for). The
interpreter's ``tl.dot`` cannot multiply bfloat16, so in interpreted mode the kernel upcasts its tiles to float32
right after loading them. p is still rounded to the input dtype first, so the numbers are those of the GPU path (the
interpreter's own float32 -> bfloat16 cast truncates, so there bfloat16 round-to-nearest is done with bit
arithmetic). Where triton cannot be imported at all, this module still imports and :func:`attention_trace` uses the
torch implementation in :mod:`explorer.kernels.tiled_torch`, which visits the same tiles in the same order.

Forward only: there is no backward kernel, so outputs carry no autograd history (use it under ``no_grad``).
Trace memory is B·H·n_q_blocks·n_kv_blocks·BLOCK_M·12 bytes (about 0.8 MB per head at N=1024, 64×64 tiles).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from torch import Tensor

from ..errors import ExplorerError
from .tiled_torch import LOG2E, FlashResult, cdiv, check_inputs, tiled_attention

if not torch.cuda.is_available():  # must happen before triton is imported (it decides at @jit time)
    os.environ.setdefault("TRITON_INTERPRET", "1")

__all__ = ["FlashResult", "attention_trace", "flash_attention", "runs_interpreted", "triton_available", "triton_listed"]

_UNTRIED = object()
_kernel_code: Any = _UNTRIED  # explorer.kernels.flash_triton once imported, None where triton cannot be imported


def _kernels() -> Any:
    """The kernel's Triton code (explorer/kernels/flash_triton.py), imported on first use, with triton: not at this
    module's import, which the app's launch pays for (the model's attention backends). None without triton."""
    global _kernel_code
    if _kernel_code is _UNTRIED:
        try:
            from . import flash_triton
        except Exception:  # noqa: BLE001 - any failure to import means "no triton here"
            flash_triton = None
        _kernel_code = flash_triton
    return _kernel_code


def __getattr__(name: str) -> Any:
    """``_flash_fwd`` (the jitted kernel, for benchmarks/gpu_check.py's ahead-of-time compile) and ``triton`` (None
    without it), imported on first use as the kernel is."""
    kernels = _kernels() if name in ("_flash_fwd", "triton") else None
    if name == "triton":
        return kernels and kernels.triton
    if kernels is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return kernels._flash_fwd


def triton_available() -> bool:
    """True when triton imports and the kernel can run here: interpreted (no CUDA) or compiled for a CUDA GPU."""
    return _kernels() is not None and (runs_interpreted() or torch.cuda.is_available())


def triton_listed() -> bool:
    """``triton_available`` as far as it can be told without importing triton (for lists of what can run, such as
    the app's panel at launch): triton is installed and runs interpreted (no CUDA) or on CUDA. Exact once the
    kernel was asked for; a triton that is installed but fails to import is refused when chosen."""
    if _kernel_code is not _UNTRIED:
        return triton_available()
    interpreted = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
    return importlib.util.find_spec("triton") is not None and (interpreted or torch.cuda.is_available())


def runs_interpreted() -> bool:
    """True when the kernel runs in Triton's CPU interpreter rather than compiled for a GPU."""
    kernels = _kernels()
    if kernels is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernels._flash_fwd, InterpretedFunction)


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    scale: float | None = None,
    block_m: int = 64,
    block_n: int = 64,
    trace: bool = False,
) -> FlashResult:
    """Run the Triton kernel. q [B, H, T, D]; k, v [B, Hkv, S, D] (any strides; H a multiple of Hkv).

    ``causal``: bottom-right aligned (query i sees keys 0 .. S−T+i). ``mask``: bool, True = may attend,
    broadcastable to [B, H, T, S]; given together with ``causal`` both apply. ``scale`` defaults to 1/√D.
    ``trace=True`` compiles the TRACE variant and fills m, l, alpha and tile_state (see :class:`FlashResult`).
    """
    if _kernels() is None:
        raise RuntimeError("triton is not installed; use attention_trace(..., backend='torch')")
    scale, mask = check_inputs(q, k, v, mask, scale, block_m, block_n)
    interpreted = runs_interpreted()
    if not interpreted and not q.is_cuda:
        raise ValueError(
            "the compiled Triton kernel needs CUDA tensors; move q, k, v to the GPU or use backend='torch'"
        )
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    NQ, NKV = cdiv(T, block_m), cdiv(S, block_n)
    dev = q.device
    o = torch.empty(B, H, T, D, dtype=q.dtype, device=dev)
    lse = torch.empty(B, H, T, dtype=torch.float32, device=dev)
    if mask is not None:
        mask_arg = mask.to(torch.int8).expand(B, H, T, S)  # broadcast dims get stride 0: no copy
        mask_strides = mask_arg.stride()
    else:
        mask_arg, mask_strides = q, (0, 0, 0, 0)  # never read
    if trace:
        shape = (B, H, NQ, NKV, block_m)
        tm, tl_, ta = (torch.full(shape, float("nan"), device=dev) for _ in range(3))
        ts = torch.zeros(B, H, NQ, NKV, dtype=torch.int8, device=dev)
    else:
        tm = tl_ = ta = ts = lse  # never written: TRACE=False compiles the stores away
    if T and S:
        _launch(q, k, v, o, lse, mask_arg, mask_strides, tm, tl_, ta, ts, H, Hkv, T, S, D, NQ, NKV, scale,
                block_m, block_n, causal, mask is not None, trace, interpreted)  # fmt: skip
    else:
        o.zero_()
        lse.fill_(float("-inf"))
    res = FlashResult(o=o, lse=lse, block_m=block_m, block_n=block_n, backend="triton")
    if trace:
        res.m, res.l, res.alpha, res.tile_state = tm, tl_, ta, ts
    return res


# Shared memory one block may use (the opt-in maximum), by compute capability: A100 163 KB; RTX 30xx/40xx and
# other sm_86/sm_89 parts 99 KB; H100 227 KB. Triton refuses a kernel above the device's own limit at launch.
SHARED_MEMORY_LIMITS = {80: 166912, 86: 101376, 89: 101376, 90: 232448}


def padded_head_dim(head_dim: int) -> int:
    """The kernel's BLOCK_D: head_dim padded to a power of two, at least 16."""
    return max(16, 1 << (head_dim - 1).bit_length())


def launch_options(head_dim: int) -> list[dict[str, int]]:
    """The compiled launch options to try, best first: two K/V pipeline stages, then one (half the shared memory).
    The launcher takes the first whose kernel fits the device; ``benchmarks/gpu_check.py --compile-only`` compiles
    the same list for sm_80/86/89/90 without a GPU."""
    warps = 4 if padded_head_dim(head_dim) <= 64 else 8
    return [{"num_warps": warps, "num_stages": 2}, {"num_warps": warps, "num_stages": 1}]


def kernel_constants(dtype: torch.dtype, block_m: int, block_n: int, head_dim: int, causal: bool, has_mask: bool,
                     trace: bool, interpreted: bool = False) -> dict:  # fmt: skip
    """The kernel's compile-time constants, shared by the launcher and the ahead-of-time compile check."""
    return dict(
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=padded_head_dim(head_dim),
        CAUSAL=bool(causal), HAS_MASK=bool(has_mask), TRACE=bool(trace),
        UPCAST=interpreted, ROUND_BF16=interpreted and dtype == torch.bfloat16,
        PRECISION="ieee" if dtype == torch.float32 else None,
    )  # fmt: skip


def _launch(q, k, v, o, lse, mask_arg, mask_strides, tm, tl_, ta, ts, H, Hkv, T, S, D, NQ, NKV, scale,
            block_m, block_n, causal, has_mask, trace, interpreted):  # fmt: skip
    B = q.shape[0]
    args = (
        q, k, v, o, lse, mask_arg, tm, tl_, ta, ts,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), *mask_strides,
        H, H // Hkv, T, S, D, NQ, NKV, scale * LOG2E,
    )  # fmt: skip
    constants = kernel_constants(q.dtype, block_m, block_n, D, causal, has_mask, trace, interpreted)
    if interpreted:
        _kernels()._flash_fwd[(NQ, B * H)](*args, **constants)
        return
    from triton.runtime.errors import OutOfResources

    refused = None
    for options in launch_options(D):
        try:  # triton checks the compiled kernel's shared memory against the device before it runs anything
            _kernels()._flash_fwd[(NQ, B * H)](*args, **constants, **options)
            return
        except OutOfResources as exc:
            if exc.name != "shared memory":
                raise
            refused = exc
    dtype = str(q.dtype).removeprefix("torch.")
    hint = "smaller blocks" + (", or float16/bfloat16" if q.dtype == torch.float32 else "")
    raise ExplorerError(
        f"FlashAttention tiles {block_m}x{block_n} at head_dim {D} in {dtype} need {refused.required // 1024} KB of "
        f"shared memory; this GPU allows {refused.limit // 1024} KB per block: choose {hint}"
    )


def attention_trace(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    scale: float | None = None,
    block_m: int = 64,
    block_n: int = 64,
    trace: bool = True,
    backend: str = "auto",
) -> FlashResult:
    """FlashAttention forward with its trace, from the Triton kernel when it can run here (``backend="auto"``:
    triton when importable and either interpreted or given CUDA tensors), else from the tiled torch
    implementation. ``backend`` may force "triton" or "torch"."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "auto":
        backend = "triton" if _kernels() is not None and (q.is_cuda or runs_interpreted()) else "torch"
    fn = flash_attention if backend == "triton" else tiled_attention
    return fn(q, k, v, causal=causal, mask=mask, scale=scale, block_m=block_m, block_n=block_n, trace=trace)
