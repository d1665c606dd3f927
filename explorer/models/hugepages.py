"""CPU memory in transparent huge pages, for weights that decoding streams once per token.

Decoding on a CPU reads every weight once per token, and with 4 KiB pages that stream misses the TLB on every
page. Linux backs a region with 2 MiB pages when it is advised so (``madvise(MADV_HUGEPAGE)``, honoured where
``/sys/kernel/mm/transparent_hugepage/enabled`` says ``always`` or ``madvise``) before its pages are first touched.
Measured here on SmolLM2-135M's 538 MB of fp32 weights, multiplied one row at a time: 40.6 ms per token against
44.5 ms (median of 8 alternated passes). Elsewhere (not Linux, no libc, advice refused) this is a plain
``torch.empty``: same numbers, ordinary pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

HUGE_PAGE = 2 << 20
MADV_HUGEPAGE = 14
MIN_BYTES = 4 * HUGE_PAGE  # below this the tail in small pages is most of it: not worth an aligned allocation


def _libc_function(name: str, argtypes: tuple, restype=ctypes.c_int):
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True), name)
    except (OSError, AttributeError):  # no libc, or one without the function (musl has no malloc_trim)
        return None
    fn.argtypes, fn.restype = argtypes, restype
    return fn


_MADVISE = _libc_function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))
_MALLOC_TRIM = _libc_function("malloc_trim", (ctypes.c_size_t,))


def release_freed_memory() -> None:
    """Give memory freed inside the C heap back to the system. Weights moved out of the heap leave it free but
    still resident (glibc returns only its top); without this, loading SmolLM2 ended 440 MB larger."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def huge_page_empty(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised 1-D CPU tensor whose whole 2 MiB pages are advised to be huge pages.

    The tensor starts on a 2 MiB boundary inside a slightly larger allocation; only whole huge pages inside it are
    advised, so the tail stays in small pages and nothing outside the tensor is ever touched (no extra memory).
    """
    itemsize = dtype.itemsize
    nbytes = numel * itemsize
    if _MADVISE is None or nbytes < MIN_BYTES:
        return torch.empty(numel, dtype=dtype)
    raw = torch.empty(nbytes + HUGE_PAGE, dtype=torch.uint8)  # untouched: the kernel has not mapped it yet
    offset = -raw.data_ptr() % HUGE_PAGE
    if offset % itemsize:
        return torch.empty(numel, dtype=dtype)
    advised = nbytes // HUGE_PAGE * HUGE_PAGE
    _MADVISE(raw.data_ptr() + offset, advised, MADV_HUGEPAGE)  # advice only: refused, the pages are small ones
    return raw[offset : offset + nbytes].view(dtype)
