"""Attention kernels: a FlashAttention-2 forward in Triton that can trace its online softmax, and the same
algorithm tile by tile in torch (fallback and cross-check)."""

from .flash_attention import (
    FlashResult,
    attention_trace,
    flash_attention,
    runs_interpreted,
    triton_available,
    triton_listed,
)
from .tiled_torch import tiled_attention

__all__ = [
    "FlashResult",
    "attention_trace",
    "flash_attention",
    "runs_interpreted",
    "tiled_attention",
    "triton_available",
    "triton_listed",
]
