"""The Triton code of the FlashAttention-2 forward kernel that :mod:`explorer.kernels.flash_attention` documents and
launches. That module imports this one the first time the kernel is asked for (its runs, ``triton_available``), not
at its own import: triton's import costs the app's launch about a tenth of a second it has no use for. Importing
this module imports triton (an ImportError where it is missing)."""

from __future__ import annotations

# TRITON_INTERPRET=1 without CUDA, read at @jit time below, is set by flash_attention, which the package imports
# before any of its modules
import triton
import triton.language as tl


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
