"""Drafters that need no draft model. (Draft-model chains and trees run inside the engine's Speculator, which
owns the draft's KV cache.)"""

from __future__ import annotations

import numpy as np


def lookup_continuation(context: list[int], n_max: int, length: int) -> list[int]:
    """Prompt lookup: the tokens that followed the latest earlier occurrence of the context's last n-gram
    (longest n first, n_max down to 1); empty when there is none."""
    arr = np.asarray(context, dtype=np.int64)
    size = len(arr)
    for n in range(min(n_max, size - 1), 0, -1):
        suffix = arr[size - n :]
        windows = np.lib.stride_tricks.sliding_window_view(arr[: size - 1], n)  # starts 0 .. size - 1 - n
        hits = np.flatnonzero((windows == suffix).all(axis=1))
        if len(hits):
            start = int(hits[-1]) + n
            return arr[start : start + length].tolist()
    return []
