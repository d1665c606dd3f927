"""One attention head of a real model, run through the instrumented FlashAttention kernel, with its online-softmax
state (m, l, alpha per row and tile) and how its output compares with references.

- :func:`capture_qkv` / :func:`capture_layer` run the model's forward once with a capturing attention function
  wrapped around the model's own, so the q, k, v recorded are exactly what the model's attention receives (after
  Qwen3's q/k-norm and after RoPE), together with that layer's own attention output. The forward stops right after
  the chosen layer and the model's attention function is always restored.
- :func:`trace_attention` runs the kernel with ``trace=True`` on one query head and its kv head (GQA) in the
  requested dtype and measures: the kernel's max abs error against a float64 reference of the same (dtype-rounded)
  q, k, v; the same-precision reference error (torch SDPA in that dtype against the same float64 reference) for
  Tri Dao's criterion (flash-attention #145/#410: the kernel is fine when its error is within ~2x of it); and the
  max abs difference from the model's own attention output for that head.
- :func:`save_trace` / :func:`load_trace`: one safetensors file (no pickle). Tensors q, k, v, o, lse, m, l, alpha,
  tile_state; the metadata is a JSON object stored as a string under the header key ``explorer_trace``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..atomic import atomic_path, check_output
from ..errors import ExplorerError
from ..kernels import attention_trace as kernel_attention_trace
from ..kernels import triton_available
from ..kernels.tiled_torch import NOT_VISITED, VISITED_MASKED, FlashResult, cdiv
from ..models.checkpoint import DTYPES, LoadedModel
from ..models.generate import check_length
from .meta import FORMAT, VERSION, TraceMeta

__all__ = [
    "AttentionTrace",
    "CapturedAttention",
    "TraceMeta",
    "capture_layer",
    "capture_qkv",
    "check_trace_path",
    "load_trace",
    "save_trace",
    "trace_attention",
]

METADATA_KEY = "explorer_trace"
TENSORS = ("q", "k", "v", "o", "lse", "m", "l", "alpha", "tile_state")
BACKENDS = ("auto", "triton", "torch")
MAX_BLOCK = 256


@dataclass
class CapturedAttention:
    """What one layer's attention function received and returned during one forward pass (batch 1).

    q [1, H, N, D], k and v [1, Hkv, N, D] (q and k after q/k-norm and RoPE), out [1, H, N, D] from the model's
    own attention function; ``causal``, ``mask`` and ``scale`` exactly as the model passed them (a Mistral
    sliding window arrives as a mask instead of ``causal``)."""

    q: Tensor
    k: Tensor
    v: Tensor
    out: Tensor
    causal: bool
    mask: Tensor | None
    scale: float


class _StopForward(Exception):
    """Raised by the capturing attention function once it has what it needs: later layers need not run."""


@torch.inference_mode()
def capture_layer(lm: LoadedModel, prompt_ids: Sequence[int], layer: int) -> CapturedAttention:
    """Run ``lm``'s forward on ``prompt_ids`` with a capturing wrapper around its current attention function and
    return what layer ``layer`` computed. The model's attention function is restored afterwards, even on error."""
    model = lm.model
    layer = _check_layer(lm, layer)
    if len(prompt_ids) == 0:
        raise ExplorerError("the prompt is empty")
    own, target = model.attention, layer
    captured: dict[str, Any] = {}

    def capturing(q: Tensor, k: Tensor, v: Tensor, *, causal: bool, mask: Tensor | None, scale: float, layer: int):
        out = own(q, k, v, causal=causal, mask=mask, scale=scale, layer=layer)
        if layer == target:
            captured.update(q=q.clone(), k=k.clone(), v=v.clone(), out=out.clone(), causal=causal, scale=scale)
            captured["mask"] = None if mask is None else mask.clone()
            raise _StopForward
        return out

    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=lm.device)
    model.attention = capturing
    try:
        model(ids)
    except _StopForward:
        pass
    finally:
        model.attention = own
    if not captured:
        raise ExplorerError(f"layer {layer}'s attention was never called during the forward pass")
    return CapturedAttention(**captured)


def capture_qkv(lm: LoadedModel, prompt_ids: Sequence[int], layer: int) -> tuple[Tensor, Tensor, Tensor]:
    """(q [1, H, N, D], k [1, Hkv, N, D], v [1, Hkv, N, D]) for all heads of ``layer``: exactly what the model's
    attention function receives (after Qwen3's q/k-norm and RoPE). See :func:`capture_layer` for the output too."""
    cap = capture_layer(lm, prompt_ids, layer)
    return cap.q, cap.k, cap.v


@dataclass
class AttentionTrace:
    """One head's FlashAttention forward with its online-softmax trace (all numpy, on the CPU).

    q, k, v, o float32 [N, D]: the kernel's inputs (the model's q/k after RoPE, rounded to ``meta.dtype``, then
    widened to float32 exactly) and output. lse float32 [N]: log-sum-exp of each row's scores (natural log).
    m, l, alpha float32 [n_q_blocks, n_kv_blocks, BLOCK_M]: each row's state right after the kernel processed a
    tile; m the running max of s = q·kᵀ/√D (natural-log units; 0 while a row has seen no unmasked key), l the
    running Σ exp(s − m), alpha = exp(m_before − m_after) the rescale factor of that tile; NaN for tiles never
    visited and for padding rows past N. tile_state int8 [n_q_blocks, n_kv_blocks]: 0 never visited, 1 visited,
    2 visited with masked entries. ``meta``: the trace's facts (:class:`~explorer.attention.meta.TraceMeta`).
    """

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    o: np.ndarray
    lse: np.ndarray
    m: np.ndarray
    l: np.ndarray  # noqa: E741 - the paper's name
    alpha: np.ndarray
    tile_state: np.ndarray
    meta: TraceMeta

    @property
    def n(self) -> int:
        return int(self.q.shape[0])

    @property
    def block_m(self) -> int:
        return self.meta.block_m

    @property
    def block_n(self) -> int:
        return self.meta.block_n

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in TENSORS}

    def summary(self) -> dict[str, Any]:
        """The scalar facts (what the CLI prints), without the per-token lists."""
        return self.meta.summary()


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ExplorerError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_layer(lm: LoadedModel, layer: int) -> int:
    n, layer = lm.config.num_layers, _as_int("layer", layer)
    if not 0 <= layer < n:
        raise ExplorerError(f"layer {layer} is out of range: {lm.name} has {n} layers (0..{n - 1})")
    return layer


def _check_head(lm: LoadedModel, head: int) -> int:
    n, head = lm.config.num_heads, _as_int("head", head)
    if not 0 <= head < n:
        raise ExplorerError(f"head {head} is out of range: {lm.name} has {n} attention heads (0..{n - 1})")
    return head


def _check_block(name: str, value: int) -> int:
    value = _as_int(name, value)
    if value < 16 or value > MAX_BLOCK or value & (value - 1):
        raise ExplorerError(f"{name} must be a power of two from 16 to {MAX_BLOCK}, got {value}")
    return value


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _reference(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, scale: float) -> Tensor:
    """Plain float64 softmax attention of [N, D] tensors; ``allowed`` bool [N, N] or None (a row that may see
    nothing gives 0, as the kernel does)."""
    s = (q.double() @ k.double().T) * scale
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0) @ v.double()


def _token_texts(lm: LoadedModel, ids: Sequence[int]) -> list[str]:
    if lm.tokenizer is None:
        return [str(i) for i in ids]
    return [lm.decode([i]) for i in ids]


def trace_attention(
    lm: LoadedModel,
    prompt: str | Sequence[int],
    layer: int,
    head: int,
    block_m: int = 64,
    block_n: int = 64,
    causal: bool = True,
    dtype: str = "float32",
    backend: str = "auto",
) -> AttentionTrace:
    """Trace head ``head`` of layer ``layer`` on ``prompt`` (text, or token ids) with the FlashAttention kernel.

    q is that head's, k and v its kv head's (``head // (H // Hkv)``), all as the model computed them, cast to
    ``dtype``; the kernel computes in that dtype with float32 accumulation. ``causal=False`` lets every query see
    every key (not what the model does: the comparison with the model's output is then left out, ``None``).
    ``backend``: "auto" (the Triton kernel when it can run here, interpreted on CPU), "triton" or "torch".
    The trace's ``meta`` is a :class:`~explorer.attention.meta.TraceMeta` (its fields say what each fact is).
    """
    t0 = time.perf_counter()
    ids, prompt_text = _prompt_ids(lm, prompt)
    layer, head = _check_layer(lm, layer), _check_head(lm, head)
    block_m, block_n = _check_block("block_m", block_m), _check_block("block_n", block_n)
    _check_request(lm, ids, dtype, backend)
    cap = capture_layer(lm, ids, layer)
    t_capture = time.perf_counter() - t0
    cfg = lm.config
    kv_head = head // (cfg.num_heads // cfg.num_kv_heads)
    q, k, v = _head_inputs(cap, head, kv_head, layer, dtype)
    # The model's own pattern: causal, or (Mistral past its window) an explicit mask, which lies inside the causal
    # triangle: passing causal too lets the kernel skip the tiles above the diagonal. Not causal: every key.
    mask = cap.mask if causal else None
    mask_kind = "none" if not causal else ("causal" if mask is None else "sliding_window")
    res, t_kernel = _run_kernel(q, k, v, causal, mask, cap.scale, block_m, block_n, backend)
    o = res.o[0, 0]
    err, sdpa_err = _reference_errors(q, k, v, o, causal, mask, cap.scale)
    model_diff = (o.double() - cap.out[0, head].double()).abs().max().item() if causal else None

    state = res.tile_state[0, 0].cpu()
    n_total = state.numel()
    visited = int((state != NOT_VISITED).sum())
    N, D = q.shape[-2], q.shape[-1]
    meta = TraceMeta(
        model=str(lm.path), model_name=lm.name, model_type=cfg.model_type,
        model_dtype=str(lm.dtype).removeprefix("torch."),
        prompt=prompt_text, prompt_ids=ids, tokens=_token_texts(lm, ids),
        layer=layer, head=head, kv_head=kv_head,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
        n=N, head_dim=D, scale=cap.scale,
        block_m=block_m, block_n=block_n, n_q_blocks=cdiv(N, block_m), n_kv_blocks=cdiv(N, block_n),
        causal=bool(causal), mask=mask_kind, dtype=dtype, backend=res.backend, device=str(q.device),
        tiles_total=n_total, tiles_visited=visited, tiles_skipped=n_total - visited,
        tiles_masked=int((state == VISITED_MASKED).sum()),
        reference="float64", max_abs_error=err, sdpa_max_abs_error=sdpa_err,
        error_ratio=_finite_or_none(err / sdpa_err) if sdpa_err > 0 else None,
        within_2x_sdpa=bool(err <= 2 * sdpa_err), model_max_abs_diff=model_diff,
        kernel_seconds=t_kernel, capture_seconds=t_capture,
    )  # fmt: skip
    return AttentionTrace(
        q=_np32(q[0, 0]),
        k=_np32(k[0, 0]),
        v=_np32(v[0, 0]),
        o=_np32(o),
        lse=_np32(res.lse[0, 0]),
        m=_np32(res.m[0, 0]),
        l=_np32(res.l[0, 0]),
        alpha=_np32(res.alpha[0, 0]),
        tile_state=np.ascontiguousarray(state.numpy().astype(np.int8)),
        meta=meta,
    )


def _prompt_ids(lm: LoadedModel, prompt: str | Sequence[int]) -> tuple[list[int], str]:
    """(token ids, prompt text) of a prompt given as text or as ids."""
    if isinstance(prompt, str):
        if lm.tokenizer is None:
            raise ExplorerError("this model was loaded without a tokenizer; pass token ids instead of text")
        return lm.encode(prompt), prompt
    ids = [int(i) for i in prompt]
    return ids, (lm.decode(ids) if lm.tokenizer is not None else "")


def _check_request(lm: LoadedModel, ids: list[int], dtype: str, backend: str) -> None:
    if dtype not in DTYPES:
        raise ExplorerError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if backend not in BACKENDS:
        raise ExplorerError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "triton" and not triton_available():
        raise ExplorerError("the Triton kernel cannot run here (triton is not installed); use --backend torch")
    vocab = lm.config.vocab_size
    if any(not 0 <= i < vocab for i in ids):
        raise ExplorerError(f"token ids must be in 0..{vocab - 1} for {lm.name}")
    if len(ids) > lm.config.max_position_embeddings:  # a trace may fill the context: nothing is generated after it
        check_length(lm, len(ids), 0)


def _head_inputs(cap: CapturedAttention, head: int, kv_head: int, layer: int, dtype: str) -> tuple[Tensor, ...]:
    """q of ``head``, k and v of its kv head, [1, 1, N, D] in ``dtype``; refuses values that overflow it."""
    dt = DTYPES[dtype]
    q = cap.q[:, head : head + 1].to(dt).contiguous()
    k = cap.k[:, kv_head : kv_head + 1].to(dt).contiguous()
    v = cap.v[:, kv_head : kv_head + 1].to(dt).contiguous()
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not bool(torch.isfinite(t).all()):
            raise ExplorerError(
                f"layer {layer}'s {name} holds inf or NaN in {dtype} (the model overflows in this dtype); "
                "try bfloat16 or float32"
            )
    return q, k, v


def _run_kernel(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, mask: Tensor | None, scale: float, block_m: int, block_n: int,
    backend: str,
) -> tuple[FlashResult, float]:  # fmt: skip
    """The instrumented kernel's result (trace included) and its wall-clock seconds."""
    t1 = time.perf_counter()
    try:
        res = kernel_attention_trace(
            q, k, v, causal=causal, mask=mask, scale=scale, block_m=block_m, block_n=block_n,
            trace=True, backend=backend,
        )  # fmt: skip
    except (ValueError, RuntimeError) as exc:
        raise ExplorerError(f"the attention kernel refused this input: {' '.join(str(exc).split())}") from None
    if q.is_cuda:
        torch.cuda.synchronize()
    return res, time.perf_counter() - t1


def _reference_errors(
    q: Tensor, k: Tensor, v: Tensor, o: Tensor, causal: bool, mask: Tensor | None, scale: float
) -> tuple[float, float]:
    """(max |kernel − float64 reference|, max |torch SDPA in the same dtype − float64 reference|), both on the
    same dtype-rounded inputs and the same allowed entries."""
    N = q.shape[-2]
    allowed = None
    if causal:
        allowed = torch.ones(N, N, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            allowed &= mask.reshape(-1, N, N)[0].to(q.device)
    with torch.inference_mode():
        ref = _reference(q[0, 0], k[0, 0], v[0, 0], allowed, scale)
        attn_mask = None if allowed is None else allowed[None, None]
        sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)[0, 0]
    return (o.double() - ref).abs().max().item(), (sdpa.double() - ref).abs().max().item()


def _np32(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


# --- the trace file ---


def save_trace(trace: AttentionTrace, path: str | Path) -> Path:
    """Write ``trace`` as one safetensors file (metadata as JSON under the header key ``explorer_trace``)."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = check_trace_path(path)
    meta = dict(trace.meta.as_dict(), format=FORMAT, version=VERSION)
    try:
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExplorerError(f"trace metadata is not plain JSON: {exc}") from None
    tensors = {name: np.ascontiguousarray(arr) for name, arr in trace.tensors().items()}
    try:
        with atomic_path(path) as tmp:  # a temporary name, renamed when complete: never half a trace
            save_file(tensors, str(tmp), metadata={METADATA_KEY: text})
    except (OSError, SafetensorError) as exc:
        raise ExplorerError(f"cannot write trace file {path}: {_one_line(exc)}") from None
    return path


def check_trace_path(path: str | Path) -> Path:
    """The path a trace can be written to (its folder exists, it is not a folder), or :class:`ExplorerError`."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ExplorerError(f"trace output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ExplorerError(f"cannot write trace file {path}: folder {path.parent} does not exist")
    return check_output(path, None, "--out")  # the folder is writable


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def load_trace(path: str | Path) -> AttentionTrace:
    """Read a file written by :func:`save_trace`. Anything else (missing, truncated, not safetensors, other
    tensors or metadata) raises :class:`ExplorerError` with one line saying what is wrong."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.exists():
        raise ExplorerError(f"trace file not found: {path}")
    if not path.is_file():
        raise ExplorerError(f"not a trace file: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise ExplorerError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {_one_line(exc)}"
        ) from None
    if METADATA_KEY not in header:
        raise ExplorerError(f"{path} is a safetensors file but not an explorer attention trace (no trace metadata)")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ExplorerError(f"{path}: the trace metadata is not valid JSON ({exc})") from None
    meta = TraceMeta.from_dict(meta, where=str(path))
    absent = [name for name in TENSORS if name not in arrays]
    if absent:
        raise ExplorerError(f"{path}: the trace lacks tensor(s) {', '.join(absent)}")
    _check_tensors(path, arrays, meta)
    return AttentionTrace(**{name: arrays[name] for name in TENSORS}, meta=meta)


def _check_tensors(path: Path, arrays: dict[str, np.ndarray], meta: TraceMeta) -> None:
    """Every tensor in the dtype and shape ``meta``'s sizes give it; tile states 0, 1 or 2 only."""
    n, d, bm, bn = meta.n, meta.head_dim, meta.block_m, meta.block_n
    nq, nkv = cdiv(n, bm), cdiv(n, bn)
    want = {
        "q": ((n, d), np.float32),
        "k": ((n, d), np.float32),
        "v": ((n, d), np.float32),
        "o": ((n, d), np.float32),
        "lse": ((n,), np.float32),
        "m": ((nq, nkv, bm), np.float32),
        "l": ((nq, nkv, bm), np.float32),
        "alpha": ((nq, nkv, bm), np.float32),
        "tile_state": ((nq, nkv), np.int8),
    }
    for name, (shape, dt) in want.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != dt:
            raise ExplorerError(
                f"{path}: tensor {name} is {np.dtype(arr.dtype).name} {list(arr.shape)}, "
                f"expected {np.dtype(dt).name} {list(shape)}"
            )
    if not np.isin(arrays["tile_state"], (0, 1, 2)).all():
        raise ExplorerError(f"{path}: tile_state holds values other than 0, 1, 2")
