"""The facts of one attention trace (:class:`TraceMeta`): what was traced, how, and how the kernel's output compares
with its references. Written into the trace file as one JSON object (:meth:`TraceMeta.as_dict`, the keys in this
order) and printed by ``explorer attention --json``; :meth:`TraceMeta.from_dict` reads it back, including files
written before the format recorded a version or some of the optional facts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ExplorerError

FORMAT = "explorer-attention-trace"
VERSION = 1
# What a trace file must hold to be drawn at all: the shapes of its tensors and what was traced.
REQUIRED = ("n", "head_dim", "block_m", "block_n", "layer", "head", "kv_head", "causal", "dtype", "backend")
PER_TOKEN = ("prompt_ids", "tokens")  # the long lists a summary leaves out


@dataclass(kw_only=True)
class TraceMeta:
    """One traced head's facts (see :func:`explorer.attention.trace.trace_attention`). Seconds are wall-clock
    measurements; every other fact is the same on every run of the same trace."""

    format: str = FORMAT
    version: int = VERSION
    # the model
    model: str = ""  # its folder or file
    model_name: str = ""
    model_type: str = ""
    model_dtype: str = ""  # the dtype it was loaded in
    # the sequence: the prompt's text, every token's id and text (a prompt continued by the model included)
    prompt: str = ""
    prompt_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    # the head
    layer: int
    head: int
    kv_head: int  # head // (num_heads // num_kv_heads): GQA
    num_layers: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    n: int  # tokens traced
    head_dim: int
    scale: float | None = None  # the model's softmax scale (None only in files that did not record it)
    # the kernel's tiles
    block_m: int
    block_n: int
    n_q_blocks: int | None = None
    n_kv_blocks: int | None = None
    causal: bool
    mask: str = "causal"  # "causal", "sliding_window" (Mistral past its window) or "none"
    dtype: str  # of the kernel's inputs (accumulation is float32)
    backend: str  # what actually ran: "triton" or "torch"
    device: str = "cpu"
    tiles_total: int = 0
    tiles_visited: int = 0
    tiles_skipped: int = 0
    tiles_masked: int = 0  # visited tiles with masked entries
    # accuracy: max |O − O_ref| against a float64 reference of the same dtype-rounded inputs
    reference: str = "float64"
    max_abs_error: float | None = None  # the kernel's
    sdpa_max_abs_error: float | None = None  # torch SDPA's in the same dtype
    error_ratio: float | None = None  # kernel / SDPA (None when SDPA is exact or the ratio is not finite)
    within_2x_sdpa: bool = False  # Tri Dao's criterion: the kernel is fine within ~2x of SDPA's error
    model_max_abs_diff: float | None = None  # vs the model's own attention output (None when not causal)
    kernel_seconds: float | None = None
    capture_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object a trace file holds (plain types, keys in the order above)."""
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The scalar facts (what the CLI prints), without the per-token lists."""
        return {k: v for k, v in self.as_dict().items() if k not in PER_TOKEN}

    @classmethod
    def from_dict(cls, obj: Any, where: str = "the trace") -> TraceMeta:
        """Read trace metadata as a trace file holds it; refuses with one line what is not an explorer attention
        trace, a newer version, or metadata without the required facts. Files written before a version was
        recorded count as version 1; facts they lack take their defaults; keys this version does not know are
        left out."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ExplorerError(f"{where}: the trace metadata is not an explorer attention trace")
        version = obj.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
            raise ExplorerError(f"{where}: trace format version {version!r} is not supported (max {VERSION})")
        missing = [key for key in REQUIRED if key not in obj]
        if missing:
            raise ExplorerError(f"{where}: the trace metadata lacks {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in obj.items() if k in known}
        try:
            sizes = {key: int(values[key]) for key in ("n", "head_dim", "block_m", "block_n")}
        except (TypeError, ValueError):
            raise ExplorerError(f"{where}: n, head_dim, block_m and block_n must be integers") from None
        if min(sizes.values()) < 1:
            raise ExplorerError(f"{where}: n, head_dim, block_m and block_n must be positive")
        causal = bool(values["causal"])
        values.setdefault("mask", "causal" if causal else "none")
        return cls(**{**values, **sizes, "causal": causal, "version": version})
