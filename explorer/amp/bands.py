"""Counting gradient values against the FP16 range: bands (flushed to zero, subnormal, normal, overflow, inf/NaN)
and a log2 |g| histogram, for unscaled and scaled gradients at once, without copying them (Qt-free)."""

from __future__ import annotations

import math
import struct

import numpy as np
import torch
from torch import Tensor

FP16_MAX = 65504.0
BANDS = ("inf_nan", "overflow", "normal", "subnormal", "flushed", "zero")
HIST_MIN, HIST_MAX = -40, 20
# labels of the histogram bins: "<-40", -40, ..., 20, ">=21"
HIST_BINS: tuple[str | int, ...] = ("<-40", *range(HIST_MIN, HIST_MAX + 1), f">={HIST_MAX + 1}")
N_HIST = len(HIST_BINS)

_INF_BITS = 0x7F800000
_ZERO, _FLUSHED, _SUB, _NORMAL, _OVER, _INFNAN = (
    BANDS.index(b) for b in ("zero", "flushed", "subnormal", "normal", "overflow", "inf_nan")
)


def _bits(x: float) -> int:
    """The float32 bit pattern of a non-negative float (rounded to float32)."""
    return struct.unpack("<i", struct.pack("<f", x))[0]


_CELL_SHIFT = 12  # a cell = float32 bit patterns sharing exponent and the top 11 mantissa bits
_N_CELLS = 1 << (31 - _CELL_SHIFT)
_CELLS_PER_EXP = 1 << (23 - _CELL_SHIFT)


def _band_cuts(k: int) -> tuple[int, int, int] | None:
    """Bit patterns, in the domain of g, of the fp16 band edges of g / 2^k: (last flushed value, first normal,
    first overflowing). All three lie on cell boundaries. None where they leave float32's normal range."""
    try:
        flushed = _bits(math.ldexp(1.0, k - 25))  # 2^-25 itself rounds (to even) down to 0
        normal = _bits(math.ldexp(1023.5, k - 24))  # halfway below 2^-14: rounds (to even) up to the normal 2^-14
        over = _bits(math.ldexp(65520.0, k))  # halfway above 65504: rounds (to even) up to inf
    except (OverflowError, struct.error):
        return None
    if not (1 << 23) <= flushed < normal < over < _INF_BITS:
        return None
    return flushed, normal, over


class BandCounter:
    """Counts FP16 bands and log2|g| histograms of float32 vectors, for g and for g / scale.

    ``count(flat, sizes, scale)`` takes one flattened vector made of consecutive segments of ``sizes`` and returns
    four int64 arrays: bands of the values as given and of value / scale ([segments, len(BANDS)]), and their
    histograms ([segments, N_HIST]).

    How: one ``torch.bincount`` of the top 19 bits of |g|'s float32 pattern (exponent and 11 mantissa bits: 2^19
    cells ordered by magnitude). Every fp16 band edge (2^-25, 1023.5·2^-24, 65520, each times the scale when it is a
    power of two) and every power of two starts a cell, so bands and histograms are sums over ranges of cells, exact
    — except that a cell cannot tell 0 from float32 subnormals, nor 2^-25 (flushed) from the values just above it
    (subnormal): two element-wise counts settle those. A scale that is not a power of two costs a second pass.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    @staticmethod
    def _scan(flat: Tensor) -> tuple[Tensor, Tensor, np.ndarray, int]:
        """One pass over a float32 vector: |bits|, cell counts, counts per biased exponent, exact zeros."""
        a = flat.view(torch.int32) & 0x7FFFFFFF
        counts = torch.bincount(a >> _CELL_SHIFT, minlength=_N_CELLS)
        per_exp = counts.view(-1, _CELLS_PER_EXP).sum(1).cpu().numpy()  # [256] by biased exponent
        return a, counts, per_exp, int((a == 0).sum())

    @staticmethod
    def _bands_hist(scan, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Bands and histogram of flat / 2^k, from the scan of flat (float32)."""
        a, counts, per_exp, zero = scan
        cuts = _band_cuts(k) or _band_cuts(0)
        kk = k if _band_cuts(k) else 0
        at_flushed = int((a == cuts[0]).sum())
        total = a.numel()

        def below(bits: int) -> int:  # values whose bit pattern is < bits (bits on a cell boundary)
            c = bits >> _CELL_SHIFT
            e, r = divmod(c, _CELLS_PER_EXP)
            return int(per_exp[:e].sum()) + (int(counts[e * _CELLS_PER_EXP : c].sum()) if r else 0)

        f, n, o, inf = below(cuts[0]), below(cuts[1]), below(cuts[2]), below(_INF_BITS)
        bands = np.zeros(len(BANDS), np.int64)
        bands[_ZERO] = zero
        bands[_FLUSHED] = f + at_flushed - zero
        bands[_SUB] = n - f - at_flushed
        bands[_NORMAL] = o - n
        bands[_OVER] = inf - o
        bands[_INFNAN] = total - inf
        hist = np.zeros(N_HIST, np.int64)
        exps = np.arange(256) - 127 - kk  # floor(log2) of flat / 2^k for each biased exponent (normal floats)
        exps[0] = -100000  # float32 subnormals (and zeros, removed below): far below 2^-40
        finite = per_exp[:255]
        idx = np.clip(exps[:255] - HIST_MIN + 1, 0, N_HIST - 1)
        np.add.at(hist, idx, finite)
        hist[0] -= zero
        return bands, hist

    def count(
        self, flat: Tensor, sizes: tuple[int, ...], scale: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        flat = flat.float().reshape(-1)
        mant, exp = math.frexp(scale)
        pow2 = mant == 0.5 and _band_cuts(exp - 1) is not None
        out = [np.zeros((len(sizes), w), np.int64) for w in (len(BANDS), len(BANDS), N_HIST, N_HIST)]
        start = 0
        for i, n in enumerate(sizes):
            seg = flat[start : start + n]
            start += n
            if n == 0:
                continue
            scan = self._scan(seg)
            out[0][i], out[2][i] = self._bands_hist(scan, 0)
            if pow2:  # g / 2^k: the same cells, edges moved by k
                out[1][i], out[3][i] = self._bands_hist(scan, exp - 1)
            else:
                useg = seg * torch.tensor(1.0 / scale, dtype=torch.float32, device=seg.device)
                out[1][i], out[3][i] = self._bands_hist(self._scan(useg), 0)
        return tuple(out)


def fp16_bands(values: np.ndarray | Tensor) -> dict[str, int]:
    """Band counts of a vector of values (any float dtype), as a dict: a convenience for tests and notebooks."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float32)) if not isinstance(values, Tensor) else values
    bands, _, _, _ = BandCounter().count(t, (t.numel(),))
    return dict(zip(BANDS, (int(v) for v in bands[0]), strict=True))


def flushed_share(bands: np.ndarray) -> float:
    """Flushed values as a share of the non-zero ones (the values that had something to lose)."""
    b = np.asarray(bands).reshape(-1, len(BANDS)).sum(0)
    nonzero = b.sum() - b[_ZERO]
    return float(b[_FLUSHED] / nonzero) if nonzero else 0.0
