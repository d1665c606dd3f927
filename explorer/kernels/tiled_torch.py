"""FlashAttention's forward pass tile by tile in plain torch: the fallback where Triton is missing, and the
cross-check of the Triton kernel in the tests.

It visits the (Q block, KV block) tiles exactly as the kernel in :mod:`explorer.kernels.flash_attention` does
(same loop bounds, same order, same online-softmax update, same exp2 arithmetic), so it reports the same
:class:`FlashResult`, trace included. It is vectorized over batch, heads and Q blocks (which the kernel runs as
independent programs) and loops over KV tiles, the kernel's inner loop; a tile that a Q block does not visit
leaves that block's state untouched.

Everything here is Triton-free: the result type, the input checks and the loop bounds live in this module and
the Triton launcher imports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG2E = math.log2(math.e)  # scores are multiplied by scale·log2(e) so that exp(x) becomes exp2(x·log2 e)
LN2 = math.log(2.0)  # base-2 quantities times ln 2 are back in natural units
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_HEAD_DIM = 256

# Per-tile state in FlashResult.tile_state.
NOT_VISITED, VISITED, VISITED_MASKED = 0, 1, 2


@dataclass
class FlashResult:
    """What one FlashAttention forward pass returns.

    ``o`` [B, H, T, D] in the input dtype; ``lse`` [B, H, T] float32, the log-sum-exp of each row's scaled scores
    (natural log; ``-inf`` for a row that may attend to nothing, whose output is 0).

    With ``trace=True`` (else None): ``m``, ``l``, ``alpha`` float32 [B, H, n_q_blocks, n_kv_blocks, BLOCK_M],
    each row's online-softmax state right *after* the kernel processed that tile: ``m`` the running max of the
    scaled scores s = q·kᵀ·scale (natural-log units; 0 while the row has seen no unmasked key, as FA2 does),
    ``l`` the running sum of exp(s − m), ``alpha`` = exp(m_before − m_after), the factor the tile rescaled ``l``
    and the accumulator by (0 on a row's first unmasked tile, 1 when the max did not change). Entries of tiles
    that were not visited, and of padding rows past T in the last Q block, are NaN. ``tile_state`` int8
    [B, H, n_q_blocks, n_kv_blocks]: 0 never visited, 1 visited, 2 visited and some of its real (row < T,
    key < S) entries were masked out. ``backend`` is "triton" or "torch".
    """

    o: Tensor
    lse: Tensor
    m: Tensor | None = None
    l: Tensor | None = None  # noqa: E741 - the paper's name
    alpha: Tensor | None = None
    tile_state: Tensor | None = None
    block_m: int = 64
    block_n: int = 64
    backend: str = "torch"


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_inputs(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float | None, block_m: int, block_n: int
) -> tuple[float, Tensor | None]:
    """Validate shapes and dtypes; return (scale, mask as bool [B|1, H|1, T, S] view or None)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be [B, H, T, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, T, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != D:
        raise ValueError(f"k and v must be [{B}, Hkv, S, {D}]; got {tuple(k.shape)} and {tuple(v.shape)}")
    if H % k.shape[1]:
        raise ValueError(f"query heads ({H}) must be a multiple of key/value heads ({k.shape[1]})")
    if not 1 <= D <= MAX_HEAD_DIM:
        raise ValueError(f"head_dim must be at most {MAX_HEAD_DIM}, got {D}")
    if q.dtype not in DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share one dtype of float32/float16/bfloat16; got {q.dtype}/{k.dtype}/{v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")
    if not (_is_pow2(block_m) and _is_pow2(block_n) and block_m >= 16 and block_n >= 16):
        raise ValueError(f"block sizes must be powers of two >= 16, got {block_m} x {block_n}")
    if mask is not None:
        if mask.dtype != torch.bool or mask.dim() > 4:
            raise ValueError(f"mask must be bool with at most 4 dims, got {mask.dtype} {tuple(mask.shape)}")
        mask = mask.to(q.device).reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
        S = k.shape[2]
        if any(n not in (1, want) for n, want in zip(mask.shape, (B, H, T, S), strict=True)):
            raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to [B, H, T, S] = {(B, H, T, S)}")
    return (D**-0.5 if scale is None else float(scale)), mask


def tile_bounds(
    T: int, S: int, block_m: int, block_n: int, causal: bool, has_mask: bool, device=None
) -> tuple[Tensor, Tensor]:
    """For every Q block: (n_full, n_hi) int64 [n_q_blocks]. The kernel runs KV tiles 0 .. n_full-1 without any
    mask (every entry is allowed) and n_full .. n_hi-1 with masking (causal diagonal band, keys past S, explicit
    mask); tiles from n_hi on are never visited. Causal is bottom-right aligned: query row i sees keys
    0 .. S-T+i. The Triton kernel computes the same numbers in-kernel."""
    start_m = torch.arange(0, T, block_m, device=device)
    if causal:
        last_row = torch.clamp(start_m + block_m, max=T) - 1
        hi_keys = torch.clamp(S - T + last_row + 1, 0, S)  # keys the block's last row may see
        full_keys = torch.clamp(S - T + start_m + 1, 0, S)  # keys its first row may see: no mask needed below
    else:
        hi_keys = torch.full_like(start_m, S)
        full_keys = hi_keys
    n_hi = (hi_keys + block_n - 1) // block_n
    n_full = torch.zeros_like(n_hi) if has_mask else full_keys // block_n
    return n_full, n_hi


def tiled_attention(
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
    """FlashAttention-2 forward in torch; same arguments and result as
    :func:`explorer.kernels.flash_attention.flash_attention` (``backend="torch"``)."""
    scale, mask = check_inputs(q, k, v, mask, scale, block_m, block_n)
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    dev, BM, BN = q.device, block_m, block_n
    NQ, NKV = cdiv(T, BM), cdiv(S, BN)
    Tp = NQ * BM
    if Hkv != H:  # GQA: query head h reads kv head h // (H // Hkv)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
    # fp32 math; like the kernel on a GPU, p is rounded to the input dtype before p·v.
    qf = torch.nn.functional.pad(q.float(), (0, 0, 0, Tp - T)).view(B, H, NQ, BM, D)
    kf, vf = k.float(), v.float()
    n_full, n_hi = tile_bounds(T, S, BM, BN, causal, mask is not None, dev)
    rows = torch.arange(Tp, device=dev).view(NQ, BM, 1)
    run = _Rows.start(B, H, NQ, BM, D, dev)
    tracer = _Tracer(B, H, NQ, NKV, BM, rows < T, dev) if trace else None
    for j in range(NKV):
        cols = torch.arange(j * BN, min((j + 1) * BN, S), device=dev)
        visit = (j < n_hi).view(NQ, 1)  # [NQ, 1]: which Q blocks run this tile
        if not bool(visit.any()):
            continue
        s = torch.einsum("bhqmd,bhnd->bhqmn", qf, kf[:, :, cols]) * (scale * LOG2E)  # [B, H, NQ, BM, n], base 2
        allowed = _allowed(cols, rows, T, S, causal, mask, Tp) | ~(j >= n_full).view(NQ, 1, 1)  # unmasked loop
        m_use, alpha, l_new = run.update(torch.where(allowed, s, float("-inf")), vf[:, :, cols], q.dtype, visit)
        if tracer is not None:
            tracer.record(j, visit, m_use, l_new, alpha, allowed)
    res = run.finish(T, q.dtype, BM, BN)
    if tracer is not None:
        res.m, res.l, res.alpha, res.tile_state = tracer.tm, tracer.tl, tracer.ta, tracer.ts
    return res


def _allowed(
    cols: Tensor, rows: Tensor, T: int, S: int, causal: bool, mask: Tensor | None, Tp: int
) -> Tensor:  # fmt: skip
    """bool [B|1, H|1, NQ, BM, n]: the entries of KV tile ``cols`` the masked loop lets through (causal, bottom-right
    aligned, and the explicit mask)."""
    NQ, BM = rows.shape[0], rows.shape[1]
    allowed = torch.ones(NQ, BM, cols.numel(), dtype=torch.bool, device=cols.device)
    if causal:
        allowed = allowed & (cols.view(1, 1, -1) <= S - T + rows)
    if mask is not None:
        mt = torch.nn.functional.pad(mask[..., cols], (0, 0, 0, Tp - T))  # [B|1, H|1, Tp, n]
        allowed = allowed & mt.view(mt.shape[0], mt.shape[1], NQ, BM, -1)
    return allowed


@dataclass
class _Rows:
    """Every row's online-softmax state over the KV tiles so far, in base 2: running max m, sum l, output acc."""

    m: Tensor  # [B, H, NQ, BM]
    l: Tensor  # noqa: E741 - the paper's name
    acc: Tensor  # [B, H, NQ, BM, D]

    @classmethod
    def start(cls, B: int, H: int, NQ: int, BM: int, D: int, dev) -> _Rows:
        return cls(
            m=torch.full((B, H, NQ, BM), float("-inf"), device=dev),
            l=torch.zeros(B, H, NQ, BM, device=dev),
            acc=torch.zeros(B, H, NQ, BM, D, device=dev),
        )

    def update(self, s: Tensor, v: Tensor, dtype: torch.dtype, visit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One tile of masked scores ``s`` (base 2) and its values ``v``, kept for the Q blocks that ``visit`` it;
        returns (m used, alpha, l after) for the trace."""
        m_new = torch.maximum(self.m, s.amax(-1))
        m_use = torch.where(m_new == float("-inf"), 0.0, m_new)  # FA2: a -inf max scales by 0, never NaN
        alpha = torch.exp2(self.m - m_use)
        p = torch.exp2(s - m_use[..., None])
        l_new = self.l * alpha + p.sum(-1)
        pv = torch.einsum("bhqmn,bhnd->bhqmd", p.to(dtype).float(), v)
        acc_new = self.acc * alpha[..., None] + pv
        self.m = torch.where(visit, m_new, self.m)
        self.l = torch.where(visit, l_new, self.l)
        self.acc = torch.where(visit[..., None], acc_new, self.acc)
        return m_use, alpha, l_new

    def finish(self, T: int, dtype: torch.dtype, BM: int, BN: int) -> FlashResult:
        """O = acc / l and LSE (natural log) of the real rows."""
        B, H, NQ, _, D = self.acc.shape
        l_safe = torch.where(self.l == 0, 1.0, self.l)
        o = (self.acc / l_safe[..., None]).view(B, H, NQ * BM, D)[:, :, :T].to(dtype)
        lse = torch.where(self.l == 0, float("-inf"), (self.m + torch.log2(l_safe)) * LN2)
        lse = lse.view(B, H, NQ * BM)[:, :, :T].contiguous()
        return FlashResult(o=o, lse=lse, block_m=BM, block_n=BN, backend="torch")


class _Tracer:
    """The trace of :class:`FlashResult`: each row's m, l, alpha after each tile (natural units for m) and each
    tile's state."""

    def __init__(self, B: int, H: int, NQ: int, NKV: int, BM: int, row_ok: Tensor, dev):
        shape = (B, H, NQ, NKV, BM)
        self.tm, self.tl, self.ta = (torch.full(shape, float("nan"), device=dev) for _ in range(3))
        self.ts = torch.zeros(B, H, NQ, NKV, dtype=torch.int8, device=dev)
        self.row_ok = row_ok  # [NQ, BM, 1]: rows before T
        self.pad_rows = ~row_ok.view(NQ, BM)

    def record(self, j: int, visit: Tensor, m_use: Tensor, l_new: Tensor, alpha: Tensor, allowed: Tensor) -> None:
        keep = visit & ~self.pad_rows  # [NQ, BM]
        self.tm[:, :, :, j] = torch.where(keep, m_use * LN2, float("nan"))
        self.tl[:, :, :, j] = torch.where(keep, l_new, float("nan"))
        self.ta[:, :, :, j] = torch.where(keep, alpha, float("nan"))
        real_masked = (~allowed & self.row_ok).flatten(-2).any(-1)  # [B|1, H|1, NQ]
        state = torch.where(real_masked, VISITED_MASKED, VISITED).to(torch.int8)
        self.ts[:, :, :, j] = torch.where(visit.view(-1), state, NOT_VISITED).to(torch.int8)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)
