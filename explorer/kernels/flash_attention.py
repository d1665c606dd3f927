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
``TRITON_INTERPRET=1`` before importing triton when no GPU is present. The interpreter's ``tl.dot`` cannot
multiply bfloat16, so in interpreted mode the kernel upcasts its tiles to float32 right after loading them. p is
still rounded to the input dtype first, so the numbers are those of the GPU path (the interpreter's own
float32 -> bfloat16 cast truncates, so there bfloat16 round-to-nearest is done with bit arithmetic). Where triton
cannot be imported at all, this module still imports and :func:`attention_trace` uses the torch implementation
in :mod:`explorer.kernels.tiled_torch`, which visits the same tiles in the same order.

Forward only: there is no backward kernel, so outputs carry no autograd history (use it under ``no_grad``).
Trace memory is B·H·n_q_blocks·n_kv_blocks·BLOCK_M·12 bytes (about 0.8 MB per head at N=1024, 64×64 tiles).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ..errors import ExplorerError
from .tiled_torch import LOG2E, FlashResult, cdiv, check_inputs, tiled_attention

if not torch.cuda.is_available():  # must happen before triton is imported (it decides at @jit time)
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - any failure to import means "no triton here"
    triton = None
    tl = None

__all__ = ["FlashResult", "attention_trace", "flash_attention", "runs_interpreted", "triton_available"]


def triton_available() -> bool:
    """True when triton imported and the kernel can run here: interpreted (no CUDA) or compiled for a CUDA GPU."""
    return triton is not None and (runs_interpreted() or torch.cuda.is_available())


def runs_interpreted() -> bool:
    """True when the kernel runs in Triton's CPU interpreter rather than compiled for a GPU."""
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_flash_fwd, InterpretedFunction)


if triton is not None:

    @triton.jit
    def _round_to_bf16(x):
        """float32 x rounded to the nearest bfloat16 (ties to even), kept in float32. Interpreter only: its own
        float32 -> bfloat16 cast truncates, where a GPU rounds to nearest."""
        bits = x.to(tl.uint32, bitcast=True)
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _kv_tiles(
        acc,
        l_i,
        m_i,
        q,
        k_base,
        v_base,
        mask_base,
        tm_base,
        tl_base,
        ta_base,
        state_base,
        stride_ks,
        stride_kd,
        stride_vs,
        stride_vd,
        stride_mt,
        stride_ms,
        offs_m,
        offs_n,
        offs_d,
        lo,
        hi,
        T,
        S,
        D,
        qk_scale,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        MASKED: tl.constexpr,
        CAUSAL: tl.constexpr,
        HAS_MASK: tl.constexpr,
        TRACE: tl.constexpr,
        UPCAST: tl.constexpr,
        ROUND_BF16: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """KV tiles lo .. hi-1 for one Q tile. MASKED=False: every entry is known to be allowed (no mask code at
        all); MASKED=True: the diagonal band / partial last tile / explicit mask."""
        row_ok = offs_m < T
        d_ok = offs_d < D
        for nb in range(lo, hi):
            cols = nb * BLOCK_N + offs_n
            col_ok = cols < S
            kt = tl.load(
                k_base + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd,
                mask=col_ok[None, :] & d_ok[:, None],
                other=0.0,
            )  # [BLOCK_D, BLOCK_N]: K already transposed by the addressing
            v = tl.load(
                v_base + cols[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                mask=col_ok[:, None] & d_ok[None, :],
                other=0.0,
            )
            if UPCAST:
                kt = kt.to(tl.float32)
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale  # scaled scores in base-2 units
            if MASKED:
                allowed = col_ok[None, :] & (offs_m[:, None] >= 0)
                if CAUSAL:
                    allowed = allowed & (cols[None, :] <= (S - T) + offs_m[:, None])
                if HAS_MASK:
                    explicit = tl.load(
                        mask_base + offs_m[:, None] * stride_mt + cols[None, :] * stride_ms,
                        mask=row_ok[:, None] & col_ok[None, :],
                        other=0,
                    )
                    allowed = allowed & (explicit != 0)
                s = tl.where(allowed, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # FA2: scale by 0, not by -inf (no NaN)
            alpha = tl.math.exp2(m_i - m_use)
            p = tl.math.exp2(s - m_use[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            if ROUND_BF16:
                p_in = _round_to_bf16(p)
            else:
                p_in = p.to(v.dtype)  # round p to the input dtype, as the tensor-core path does
                if UPCAST:
                    p_in = p_in.to(tl.float32)
            if UPCAST:
                v = v.to(tl.float32)
            acc = tl.dot(p_in, v, acc, input_precision=PRECISION)
            m_i = m_new
            if TRACE:
                at = nb * BLOCK_M + tl.arange(0, BLOCK_M)
                tl.store(tm_base + at, m_use * 0.6931471805599453, mask=row_ok)  # times ln 2: natural-log units
                tl.store(tl_base + at, l_i, mask=row_ok)
                tl.store(ta_base + at, alpha, mask=row_ok)
                if MASKED:
                    n_masked = tl.sum(tl.sum((row_ok[:, None] & col_ok[None, :] & ~allowed).to(tl.int32), 1), 0)
                    tl.store(state_base + nb, (1 + (n_masked > 0).to(tl.int32)).to(tl.int8))
                else:
                    tl.store(state_base + nb, tl.full([], 1, tl.int8))
        return acc, l_i, m_i

    @triton.jit
    def _flash_fwd(
        Q,
        K,
        V,
        Out,
        LSE,
        MASK,
        TRACE_M,
        TRACE_L,
        TRACE_A,
        TILE_STATE,
        stride_qb,
        stride_qh,
        stride_qt,
        stride_qd,
        stride_kb,
        stride_kh,
        stride_ks,
        stride_kd,
        stride_vb,
        stride_vh,
        stride_vs,
        stride_vd,
        stride_ob,
        stride_oh,
        stride_ot,
        stride_od,
        stride_mb,
        stride_mh,
        stride_mt,
        stride_ms,
        H,
        GROUP,
        T,
        S,
        D,
        N_Q_BLOCKS,
        N_KV_BLOCKS,
        qk_scale,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr,
        CAUSAL: tl.constexpr,
        HAS_MASK: tl.constexpr,
        TRACE: tl.constexpr,
        UPCAST: tl.constexpr,
        ROUND_BF16: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = pid_bh // H
        h = pid_bh % H
        kvh = h // GROUP
        start_m = pid_m * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < T
        d_ok = offs_d < D

        q = tl.load(
            Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :] * stride_qd,
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        if UPCAST:
            q = q.to(tl.float32)
        k_base = K + b * stride_kb + kvh * stride_kh
        v_base = V + b * stride_vb + kvh * stride_vh
        mask_base = MASK + b * stride_mb + h * stride_mh
        tile_row = pid_bh * N_Q_BLOCKS + pid_m
        trace_at = tile_row * N_KV_BLOCKS * BLOCK_M
        tm_base, tl_base, ta_base = TRACE_M + trace_at, TRACE_L + trace_at, TRACE_A + trace_at
        state_base = TILE_STATE + tile_row * N_KV_BLOCKS

        # Loop bounds (see tiled_torch.tile_bounds): [0, n_full) needs no mask, [n_full, n_hi) is masked,
        # tiles from n_hi on lie entirely above the causal diagonal and are never visited.
        if CAUSAL:
            last_row = tl.minimum(start_m + BLOCK_M, T) - 1
            hi_keys = tl.minimum(tl.maximum(S - T + last_row + 1, 0), S)
            full_keys = tl.minimum(tl.maximum(S - T + start_m + 1, 0), S)
        else:
            hi_keys = S
            full_keys = S
        n_hi = tl.cdiv(hi_keys, BLOCK_N)
        if HAS_MASK:
            n_full = 0
        else:
            n_full = full_keys // BLOCK_N

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        acc, l_i, m_i = _kv_tiles(
            acc, l_i, m_i, q, k_base, v_base, mask_base, tm_base, tl_base, ta_base, state_base,
            stride_ks, stride_kd, stride_vs, stride_vd, stride_mt, stride_ms,
            offs_m, offs_n, offs_d, 0, n_full, T, S, D, qk_scale,
            BLOCK_M, BLOCK_N, False, CAUSAL, HAS_MASK, TRACE, UPCAST, ROUND_BF16, PRECISION,
        )  # fmt: skip
        acc, l_i, m_i = _kv_tiles(
            acc, l_i, m_i, q, k_base, v_base, mask_base, tm_base, tl_base, ta_base, state_base,
            stride_ks, stride_kd, stride_vs, stride_vd, stride_mt, stride_ms,
            offs_m, offs_n, offs_d, n_full, n_hi, T, S, D, qk_scale,
            BLOCK_M, BLOCK_N, True, CAUSAL, HAS_MASK, TRACE, UPCAST, ROUND_BF16, PRECISION,
        )  # fmt: skip

        # A row that saw no key has l = 0 (and m = -inf): output 0 and LSE -inf, never 0/0 or log 0.
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        o = acc / l_safe[:, None]
        if ROUND_BF16:
            o = _round_to_bf16(o)
        tl.store(
            Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :] * stride_od,
            o.to(Out.dtype.element_ty),
            mask=row_ok[:, None] & d_ok[None, :],
        )
        lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)
        tl.store(LSE + pid_bh * T + offs_m, lse, mask=row_ok)


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
    if triton is None:
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
        _flash_fwd[(NQ, B * H)](*args, **constants)
        return
    from triton.runtime.errors import OutOfResources

    refused = None
    for options in launch_options(D):
        try:  # triton checks the compiled kernel's shared memory against the device before it runs anything
            _flash_fwd[(NQ, B * H)](*args, **constants, **options)
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
        backend = "triton" if triton is not None and (q.is_cuda or runs_interpreted()) else "torch"
    fn = flash_attention if backend == "triton" else tiled_attention
    return fn(q, k, v, causal=causal, mask=mask, scale=scale, block_m=block_m, block_n=block_n, trace=trace)
