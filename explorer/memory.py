"""Memory estimated before large allocations, so that a request that cannot fit is refused in one line naming
the figure instead of ending in an allocator traceback (or the kernel's OOM killer) after minutes of work. Qt-free.
"""

from __future__ import annotations

import os

from .errors import ExplorerError

GIB = 2**30
HEADROOM = 0.9  # leave a tenth of what is free for everything else


def available_bytes(device: str = "cpu") -> int | None:
    """Free memory on ``device`` now (CPU: MemAvailable, else physical memory; CUDA: torch's free count), or None
    when it cannot be told."""
    if str(device).startswith("cuda"):
        import torch

        try:
            free, _total = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except (RuntimeError, AssertionError, ValueError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n < 100 * GIB else f"{n / GIB:.0f} GiB"


def check_fits(needed: int, what: str, device: str = "cpu", hint: str = "") -> None:
    """Refuse (ExplorerError) when ``needed`` bytes exceed the free memory on ``device``: '<what> needs 64.00 GiB
    but cpu has 11.20 GiB free; <hint>'."""
    free = available_bytes(device)
    if free is None or needed <= free * HEADROOM:
        return
    raise ExplorerError(f"{what} needs {gib(needed)} but {device} has {gib(free)} free" + (f"; {hint}" if hint else ""))


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, slots: int, element_size: int, batch: int = 1):
    """Keys and values for every layer: 2 x layers x KV heads x head_dim x slots x batch x bytes per element."""
    return 2 * num_layers * num_kv_heads * head_dim * slots * batch * element_size


def training_bytes(parameters: int, activations: int) -> int:
    """A rough floor for AdamW training in mixed precision: fp32 weights, gradients and two moments (16 bytes per
    parameter), plus the activations kept for backward (counted in fp32 elements)."""
    return 16 * parameters + 4 * activations
