"""The Llama-family decoder in one readable file (Llama 2/3.x, Mistral, Qwen2/2.5, Qwen3, SmolLM2, TinyLlama).

Module names mirror Hugging Face's (``model.layers.0.self_attn.q_proj``...) so a checkpoint's tensors load by name.
The model never decides *how* attention is computed: it calls one pluggable function (torch SDPA by default) with
queries and keys after RoPE, so the Triton kernel and the instrumented paths can be swapped in without touching
the rest. The KV cache is preallocated and indexed by slot; positions (for RoPE) are passed explicitly, which is
what speculative tree verification needs (many slots share one position).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ExplorerError
from .hugepages import huge_page_empty, release_freed_memory
from .progress import report

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] = field(default_factory=dict)  # always holds "rope_type"
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None

    @classmethod
    def from_hf(cls, raw: dict[str, Any]) -> ModelConfig:
        """Read a Hugging Face ``config.json`` dict; refuse (by field name, with what is allowed) what this decoder
        does not implement and every value it cannot run with."""
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            archs = ", ".join(a for a in (raw.get("architectures") or []) if isinstance(a, str)) or "unknown"
            raise ExplorerError(
                f"unsupported architecture {model_type!r} ({archs}); supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        act = raw.get("hidden_act", "silu")
        if act != "silu":
            raise ExplorerError(f"unsupported activation {act!r}; Llama-family models use 'silu'")
        hidden = config_int(raw, "hidden_size", lo=1)
        heads = config_int(raw, "num_attention_heads", lo=1)
        kv_heads = config_int(raw, "num_key_value_heads", lo=1, default=heads)
        if heads % kv_heads:
            raise ExplorerError(
                f"config.json: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads})"
            )
        if raw.get("head_dim") is None and hidden % heads:
            raise ExplorerError(
                f"config.json: hidden_size ({hidden}) must be a multiple of num_attention_heads ({heads}) "
                "when head_dim is not given"
            )
        head_dim = config_int(raw, "head_dim", lo=2, hi=1024, default=hidden // heads)
        if head_dim % 2:
            raise ExplorerError(f"config.json: head_dim must be even for RoPE (got {head_dim})")
        theta, scaling = _read_rope(raw)
        attention_bias = config_bool(raw, "attention_bias", False)
        window = config_int(raw, "sliding_window", lo=1, default=None, none=True)
        if model_type in ("qwen2", "qwen3") and not config_bool(raw, "use_sliding_window", False):
            window = None  # Qwen configs carry a window size but leave it switched off
        return cls(
            model_type=model_type,
            vocab_size=config_int(raw, "vocab_size", lo=1),
            hidden_size=hidden,
            intermediate_size=config_int(raw, "intermediate_size", lo=1),
            num_layers=config_int(raw, "num_hidden_layers", lo=1, hi=10_000),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=config_float(raw, "rms_norm_eps", default=1e-6, lo=0.0, lo_open=True, hi=1.0),
            rope_theta=theta,
            rope_scaling=scaling,
            max_position_embeddings=config_int(raw, "max_position_embeddings", lo=1, default=2048),
            tie_word_embeddings=config_bool(raw, "tie_word_embeddings", False),
            qkv_bias=attention_bias or model_type == "qwen2",
            o_bias=attention_bias,
            mlp_bias=config_bool(raw, "mlp_bias", False),
            qk_norm=model_type == "qwen3",
            sliding_window=window,
        )


_MISSING = object()


def _describe(value: Any) -> str:
    """A config value as JSON spells it, short: null, "tiny", -4, [1, 2]."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def config_int(
    raw: dict[str, Any], key: str, lo: int | None = None, hi: int | None = None, default: Any = _MISSING,
    none: bool = False, where: str = "config.json",
) -> Any:
    """An integer field (a float with an integral value, as some exporters write, is accepted); a missing or null
    field takes ``default`` (required when there is none)."""
    value = raw.get(key, _MISSING)
    if value is _MISSING or (value is None and (none or default is not _MISSING)):
        if default is _MISSING:
            raise ExplorerError(f"{where} has no {key} (an integer)")
        return default
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    rng = f" in {lo}..{hi}" if lo is not None and hi is not None else (f" >= {lo}" if lo is not None else "")
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ExplorerError(f"{where}: {key} must be an integer{rng} (got {_describe(raw.get(key))})")
    return value


def config_float(
    raw: dict[str, Any], key: str, default: Any = _MISSING, lo: float | None = None, lo_open: bool = False,
    hi: float | None = None, where: str = "config.json",
) -> float:
    """A finite number field, within its range."""
    value = raw.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise ExplorerError(f"{where} has no {key} (a number)")
        return float(default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None and (value < lo or (lo_open and value == lo)):
        ok = False
    if ok and hi is not None and value > hi:
        ok = False
    if not ok:
        rng = ""
        if lo is not None:
            rng = f" {'above' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
        raise ExplorerError(f"{where}: {key} must be a finite number{rng} (got {_describe(value)})")
    return float(value)


def config_bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ExplorerError(f"config.json: {key} must be true or false (got {_describe(value)})")
    return value


def _read_rope(raw: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """RoPE settings come in two spellings: ``rope_theta`` + ``rope_scaling`` (published checkpoints, older files
    say ``type``) and ``rope_parameters`` (transformers >= 5). Return (theta, scaling dict with ``rope_type``),
    every field the rope type needs checked."""
    params = raw.get("rope_parameters")
    if params is not None and not isinstance(params, dict):
        raise ExplorerError(f"config.json: rope_parameters must be an object (got {_describe(params)})")
    if params:
        scaling = dict(params)
        where = "config.json rope_parameters"
        theta = config_float({"rope_theta": scaling.pop("rope_theta", raw.get("rope_theta"))}, "rope_theta",
                             10000.0, lo=0.0, lo_open=True)  # fmt: skip
    else:
        given = raw.get("rope_scaling")
        if given is not None and not isinstance(given, dict):
            raise ExplorerError(f"config.json: rope_scaling must be an object or null (got {_describe(given)})")
        scaling = dict(given or {})
        where = "config.json rope_scaling"
        theta = config_float(raw, "rope_theta", 10000.0, lo=0.0, lo_open=True)
    rope_type = scaling.pop("rope_type", None) or scaling.pop("type", None) or "default"
    scaling.pop("type", None)
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ExplorerError(f"unsupported rope type {rope_type!r}; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    if rope_type in ("linear", "llama3"):
        scaling["factor"] = config_float(scaling, "factor", lo=0.0, lo_open=True, where=where)
    if rope_type == "llama3":
        low = scaling["low_freq_factor"] = config_float(scaling, "low_freq_factor", lo=0.0, lo_open=True, where=where)
        high = scaling["high_freq_factor"] = config_float(scaling, "high_freq_factor", lo=0.0, lo_open=True,
                                                          where=where)  # fmt: skip
        if high <= low:
            raise ExplorerError(f"{where}: high_freq_factor ({high:g}) must be above low_freq_factor ({low:g})")
        scaling["original_max_position_embeddings"] = config_int(
            scaling, "original_max_position_embeddings", lo=1, where=where
        )
    scaling["rope_type"] = rope_type
    return theta, scaling


def rope_inv_freq(cfg: ModelConfig) -> Tensor:
    """Inverse frequencies (float32) for RoPE, with linear or Llama-3 frequency scaling applied."""
    dim = cfg.head_dim
    # Always on the CPU (even inside a `torch.device("meta")` block): tiny, and the caller moves it.
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim
    inv_freq = 1.0 / (cfg.rope_theta**exponents)
    kind = cfg.rope_scaling["rope_type"]
    if kind == "linear":
        inv_freq = inv_freq / float(cfg.rope_scaling["factor"])
    elif kind == "llama3":
        s = cfg.rope_scaling
        factor, low, high = float(s["factor"]), float(s["low_freq_factor"]), float(s["high_freq_factor"])
        old_ctx = float(s["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        # Long wavelengths are slowed by `factor`, short ones kept, the band between blended smoothly.
        scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = ~(wavelen < old_ctx / high) & ~(wavelen > old_ctx / low)
        inv_freq = torch.where(is_medium, blended, scaled)
    return inv_freq


def rope_cos_sin(inv_freq: Tensor, position_ids: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and *signed* sin tables [B, 1, T, head_dim] for explicit (possibly repeated, as in a token tree) positions.

    The signed sin has its first half negated, so that :func:`apply_rope` needs a single roll instead of the
    slice-negate-concatenate of ``rotate_half`` (negation is exact: the numbers are identical).
    """
    freqs = position_ids[..., None].float() * inv_freq  # [B, T, D/2], in float32 like the reference
    emb = torch.cat((freqs, freqs), dim=-1)
    sin = emb.sin()
    sin[..., : sin.shape[-1] // 2].neg_()
    return emb.cos().to(dtype)[:, None], sin.to(dtype)[:, None]


def apply_rope(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """Rotate [B, H, T, D] by the half-split RoPE convention of Hugging Face checkpoints:
    x·cos + rotate_half(x)·sin, where rotate_half(x) = [-x2, x1] = roll(x, D/2)·[-1, +1]."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class AttentionFn(Protocol):
    """Computes attention for one layer. q: [B, H, T, D]; k, v: [B, Hkv, S, D] (GQA: H is a multiple of Hkv).

    ``causal`` means query i sees keys 0 .. S - T + i (bottom-right aligned, the case of a growing cache).
    ``mask`` (bool, True = may attend, broadcastable to [B, H, T, S]) is given instead of ``causal`` for custom
    patterns such as a speculative token tree or a sliding window. Returns [B, H, T, D].
    """

    def __call__(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool, mask: Tensor | None, scale: float, layer: int
    ) -> Tensor: ...


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool, mask: Tensor | None, scale: float, layer: int
) -> Tensor:
    """Default backend: torch's scaled_dot_product_attention."""
    T, S = q.shape[-2], k.shape[-2]
    if causal and T > 1 and T != S:
        mask = _shared_causal_mask(T, S, q.device, torch.is_inference_mode_enabled())
    is_causal = causal and T > 1 and T == S
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale, enable_gqa=q.shape[1] != k.shape[1]
    )


def causal_mask(T: int, S: int, device: torch.device | str = "cpu") -> Tensor:
    """[T, S] bool: query i (at slot S - T + i) sees slots <= S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


@functools.lru_cache(maxsize=4)
def _shared_causal_mask(T: int, S: int, device: torch.device, inference: bool) -> Tensor:
    """One mask for every layer of a forward (and for the next forward of the same shape): building it per layer
    cost speculative verification 2-3% of its forward on the demo target. ``inference``: a mask made in inference
    mode must not reach a forward that records gradients. Never modified by its users."""
    return causal_mask(T, S, device)


class KVCache:
    """Preallocated keys and values for every layer, [L, B, Hkv, max_len, D], filled slot by slot.

    Slots are storage, positions are meaning: ``truncate`` rolls back by forgetting slots (they are simply
    overwritten later) and ``keep`` compacts a chosen list of slots to the front, in order, as after a
    speculative tree verification that accepted one path.
    """

    def __init__(self, cfg: ModelConfig, max_len: int, batch: int = 1, dtype=torch.float32, device="cpu"):
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self._layers = list(zip(self.k.unbind(0), self.v.unbind(0), strict=True))  # views: fewer ops per write
        self.max_len = max_len
        self.length = 0

    def truncate(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} slots to {length}")
        self.length = length

    def keep(self, slots: Sequence[int]) -> None:
        """Keep exactly ``slots`` (strictly increasing, all < length), moved to the front in order."""
        slots = list(slots)
        increasing = all(a < b for a, b in zip(slots, slots[1:], strict=False))
        if not increasing or (slots and not 0 <= slots[0] <= slots[-1] < self.length):
            raise ValueError("slots to keep must be strictly increasing and inside the cache")
        start = 0  # the untouched prefix needs no copy
        while start < len(slots) and slots[start] == start:
            start += 1
        if start < len(slots):
            idx = torch.tensor(slots[start:], device=self.k.device)
            end = len(slots)
            self.k[:, :, :, start:end] = self.k.index_select(3, idx)
            self.v[:, :, :, start:end] = self.v.index_select(3, idx)
        self.length = len(slots)

    def write(self, layer: int, start: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = start + k.shape[-2]
        if end > self.max_len:
            raise ExplorerError(f"KV cache is full ({self.max_len} slots); use a shorter prompt or fewer new tokens")
        keys, values = self._layers[layer]
        keys.narrow(2, start, end - start).copy_(k)
        values.narrow(2, start, end - start).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self._consts: tuple[torch.device, Tensor, Tensor] | None = None

    def _constants(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """n and eps as float32 0-d tensors on x's device (not buffers: a cast to fp16 and back would round eps)."""
        if self._consts is None or self._consts[0] != x.device:
            def const(v: float) -> Tensor:
                return torch.tensor(v, dtype=torch.float32, device=x.device)

            self._consts = (x.device, const(float(x.shape[-1])), const(self.eps))
        return self._consts[1], self._consts[2]

    def forward(self, x: Tensor) -> Tensor:
        """weight · x / rms(x), normalized in float32 whatever the weights' dtype (as the reference does)."""
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            if not torch.is_grad_enabled():
                # The same products and sums as F.rms_norm (mean = sum / n), in fewer, cheaper ops: its CPU
                # composite costs ~30 us per call here against ~11 us, and SmolLM2 makes 61 calls per token.
                # n and eps as 0-d tensors: a Python scalar is wrapped into a tensor on every call.
                n, eps = self._constants(x)
                return self.weight * (x * (x * x).sum(-1, keepdim=True).div_(n).add_(eps).rsqrt_())
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        h = F.rms_norm(x.float(), self.weight.shape, None, self.eps)
        return self.weight * h.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.cfg = layer, cfg
        d, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(d, cfg.num_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, cfg.num_kv_heads * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.num_heads * hd, d, bias=cfg.o_bias)
        if cfg.qk_norm:  # Qwen3: RMSNorm over each head's q and k, before RoPE
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps)
        self.qkv: tuple[Tensor, Tensor | None] | None = None  # fused weights, see fuse()
        self.out: tuple[Tensor, Tensor | None] | None = None  # o_proj's, as the fused forward multiplies it

    def fuse(self, take: WeightStore | None = None) -> None:
        """Inference only: q, k and v from one matmul (fewer, larger GEMVs decode faster). The three weights
        become views into the fused one, so nothing is stored twice and state_dict() is unchanged."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        self.qkv = _fuse_linears(projs, take)
        if take is not None:
            _fuse_linears((self.o_proj,), take)  # moved beside the others, in the order decoding reads them
        self.out = (self.o_proj.weight, self.o_proj.bias)

    def forward(self, x, cos, sin, attn: AttentionFn, cache: KVCache | None, start: int, mask: Tensor | None):
        B, T, _ = x.shape
        cfg, hd = self.cfg, self.cfg.head_dim
        if self.qkv is not None:
            qkv = inference_linear(x, *self.qkv).view(B, T, -1, hd)
            if not cfg.qk_norm:  # rotate q and k in one go: [B, T, H + Hkv, D] against [B, T, 1, D] tables
                H, Hkv = cfg.num_heads, cfg.num_kv_heads
                qk = apply_rope(qkv[:, :, : H + Hkv], cos.transpose(1, 2), sin.transpose(1, 2)).transpose(1, 2)
                return self._attend(qk[:, :H], qk[:, H:], qkv[:, :, H + Hkv :], attn, cache, start, mask)
            q, k, v = qkv.split([cfg.num_heads, cfg.num_kv_heads, cfg.num_kv_heads], dim=2)
        else:
            q = self.q_proj(x).view(B, T, -1, hd)
            k = self.k_proj(x).view(B, T, -1, hd)
            v = self.v_proj(x).view(B, T, -1, hd)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q.transpose(1, 2), cos, sin)
        k = apply_rope(k.transpose(1, 2), cos, sin)
        return self._attend(q, k, v, attn, cache, start, mask)

    def _attend(self, q, k, v, attn: AttentionFn, cache: KVCache | None, start: int, mask: Tensor | None):
        """q, k after RoPE ([B, H, T, D]); v as projected ([B, T, Hkv, D])."""
        B, T = q.shape[0], q.shape[2]
        hd = self.cfg.head_dim
        v = v.transpose(1, 2)
        if cache is not None:
            k, v = cache.write(self.layer, start, k, v)
        out = attn(q, k, v, causal=mask is None, mask=mask, scale=hd**-0.5, layer=self.layer)
        out = out.transpose(1, 2).reshape(B, T, -1)
        if self.qkv is not None:
            return inference_linear(out, *self.out)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, f, b = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = nn.Linear(d, f, bias=b)
        self.up_proj = nn.Linear(d, f, bias=b)
        self.down_proj = nn.Linear(f, d, bias=b)
        self.gate_up: tuple[Tensor, Tensor | None] | None = None  # fused weights, see fuse()
        self.down: tuple[Tensor, Tensor | None] | None = None  # down_proj's, as the fused forward multiplies it

    def fuse(self, take: WeightStore | None = None) -> None:
        """Inference only: gate and up projections from one matmul (see Attention.fuse)."""
        self.gate_up = _fuse_linears((self.gate_proj, self.up_proj), take)
        if take is not None:
            _fuse_linears((self.down_proj,), take)
        self.down = (self.down_proj.weight, self.down_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_up is not None:
            gate, up = inference_linear(x, *self.gate_up).chunk(2, dim=-1)
            return inference_linear(F.silu(gate) * up, *self.down)
        gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


SMALL_BATCH_ROWS = 32
HALF_ROWS = 4  # 16-bit weights: the most rows multiplied in 16 bits (see _half_linear)


def inference_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x·Wᵀ + b for inference. Decoding and speculative verification multiply a handful of rows by each weight,
    and on the CPU that is bound by streaming W. Written as (W·xᵀ)ᵀ, BLAS runs it as a GEMM that streams a
    row-major W several times faster than x·Wᵀ does (measured here on the demo target's 28 MB of fp32 weights:
    0.6-0.7 ms against 1.8 ms for one row); a single row is doubled, because the matrix-vector path BLAS would
    otherwise take is the slow one. (A model whose weights stay in cache between calls is the exception: the demo
    draft alone decodes faster through x·Wᵀ, but not while it alternates with the target, which evicts it.)
    Same products, summed in another order; the result is made row-major again, which SDPA's fast CPU kernel
    needs (a transposed q sent verification to its slow reference path: 2.7 instead of 2.2 ms for 4 tokens)."""
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    if weight.dtype != x.dtype:
        return _half_linear(x, rows, weight, bias)
    if x.device.type != "cpu" or n > SMALL_BATCH_ROWS:
        return F.linear(x, weight, bias)
    if n == 1:  # one column of the doubled product, left strided: its single row needs no row-major copy
        out = torch.mm(weight, rows.expand(2, -1).contiguous().T)[:, 0]
    elif n == 3:  # padded to 4 rows: BLAS multiplies 4 faster than 3 (the target's layers here: 0.76 against 0.81 ms)
        out = (weight @ torch.cat([rows, rows[:1]]).T).T[:3].contiguous()
    else:
        out = (weight @ rows.T).T.contiguous()
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _half_linear(x: Tensor, rows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x·Wᵀ + b with W in half precision and x (and b) in float32 (the draft heads' copies, see
    ``heads.for_inference``): x is rounded to W's dtype, the product accumulates in float32 and comes back as
    float32. Measured here for a 1,024 × 256 matrix that the target's forward has pushed out of the caches: 86 µs
    against 202 µs for the float32 GEMM, in part from half the bytes; one row goes through the matrix-vector
    kernel, which is the fast one for 16-bit weights. More than HALF_ROWS rows go through a float32 copy of W:
    the CPU's 16-bit matrix product has no blocked kernel and costs in proportion to the rows (measured here for
    a 768 × 256 matrix: 2.8 ms for 102 rows, against 0.5 ms converting W and multiplying in float32)."""
    if rows.shape[0] == 1:
        out = matvec(rows[0], weight, bias)
    elif rows.shape[0] > HALF_ROWS:  # the same rounding as in 16 bits: x to W's dtype, the product back to it
        out = F.linear(rows.to(weight.dtype).to(x.dtype), weight.to(x.dtype)).to(weight.dtype).to(x.dtype)
        if bias is not None:
            out = out + bias
    else:
        out = F.linear(rows.to(weight.dtype), weight).to(x.dtype)
        if bias is not None:
            out = out + bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


def matvec(v: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """W·v + b for a 1-D v through the matrix-vector kernel, in W's dtype when it differs from v's (a draft
    head's float16 copy: v is rounded to it, the result comes back in v's dtype, then b is added)."""
    out = torch.mv(weight, v.to(weight.dtype)).to(v.dtype) if weight.dtype != v.dtype else torch.mv(weight, v)
    return out + bias if bias is not None else out


WeightStore = Callable[[int], Tensor]  # numel -> an uninitialised 1-D tensor to put a weight in


ALIGN = 16  # elements: each weight in the block starts on a 64-byte boundary (fp32)


def _aligned(numel: int) -> int:
    return -(-numel // ALIGN) * ALIGN


def _weight_store(model: CausalLM, dtype: torch.dtype) -> WeightStore:
    """Hands out consecutive slices of one huge-page block sized for every linear weight and the LM head."""
    sizes = [lin.weight.numel() for lin in model.modules() if isinstance(lin, nn.Linear)]
    block = huge_page_empty(sum(_aligned(n) for n in sizes), dtype)
    pos = 0

    def take(numel: int) -> Tensor:
        nonlocal pos
        out = block[pos : pos + numel]
        pos += _aligned(numel)
        if pos > block.numel():
            raise RuntimeError("weight block overrun")  # a bug, not bad input
        return out

    return take


def _fuse_linears(linears: Sequence[nn.Linear], take: WeightStore | None = None) -> tuple[Tensor, Tensor | None]:
    """Concatenate the weights (and biases) of linears that read the same input (into memory from ``take`` when
    given); re-point each linear's parameters at its slice of the fused tensor."""
    parts = [lin.weight.detach() for lin in linears]
    if take is None:
        weight = torch.cat(parts)
    else:
        rows = sum(p.shape[0] for p in parts)
        weight = take(rows * parts[0].shape[1]).view(rows, parts[0].shape[1])
        torch.cat(parts, out=weight)
    has_bias = linears[0].bias is not None
    bias = torch.cat([lin.bias.detach() for lin in linears]) if has_bias else None
    row = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight = nn.Parameter(weight[row : row + n], requires_grad=False)
        if has_bias:
            lin.bias = nn.Parameter(bias[row : row + n], requires_grad=False)
        row += n
    return weight, bias


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, attn, cache, start, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn, cache, start, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class CausalLM(nn.Module):
    """Decoder + LM head. ``attention`` is the pluggable attention function (see :class:`AttentionFn`)."""

    def __init__(self, cfg: ModelConfig, attention: AttentionFn = sdpa_attention):
        super().__init__()
        self.config = cfg
        self.attention = attention
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)
        self.fused = False  # see fuse_for_inference

    def fuse_for_inference(self) -> CausalLM:
        """Fuse q/k/v and gate/up projections (call once, after the weights are on their final device); from then
        on the forward multiplies through :func:`inference_linear`. On the CPU every matrix the forward streams
        moves into one block of huge pages, in the order a forward reads them (see :mod:`.hugepages`)."""
        w = self.lm_head.weight
        take = _weight_store(self, w.dtype) if w.device.type == "cpu" else None
        for i, layer in enumerate(self.model.layers):
            report("fusing layers", i + 1, len(self.model.layers))
            layer.self_attn.fuse(take)
            layer.mlp.fuse(take)
            if take is not None:
                release_freed_memory()  # each layer's old copies, before the next layer's new ones are touched
        if take is not None:
            head = nn.Parameter(take(w.numel()).view_as(w).copy_(w), requires_grad=False)
            self.lm_head.weight = head
            if self.config.tie_word_embeddings:
                self.model.embed_tokens.weight = head
        self.fused = True
        return self

    def new_cache(self, max_len: int | None = None, batch: int = 1) -> KVCache:
        w = self.model.embed_tokens.weight
        return KVCache(self.config, max_len or self.config.max_position_embeddings, batch, w.dtype, w.device)

    def forward(
        self,
        input_ids: Tensor,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
        mask: Tensor | None = None,
        last_only: bool = False,
        logits: bool = True,
        features: bool = False,
    ) -> Tensor | tuple[Tensor | None, Tensor]:
        """Logits [B, T, V] (or [B, 1, V] with ``last_only``) for ``input_ids`` [B, T]; without ``logits`` the
        final norm's output (the features) instead: a prefill that only fills the cache skips the vocabulary.
        ``features``: (logits or None, features), for draft heads, without a forward hook (registering one per
        step cost a speculative step 0.2 ms on the demo target).

        With a cache, the new keys/values go to slots ``cache.length ..`` and the tokens attend to every earlier
        slot. ``position_ids`` default to the slot numbers. ``mask`` (bool) is either [.., T, T] among the new
        tokens (every cached slot stays visible: a token tree) or [.., T, cached + T]; without it, attention is causal.
        """
        B, T = input_ids.shape
        start = cache.length if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(start, start + T, device=input_ids.device)
        position_ids = position_ids.expand(B, T) if position_ids.dim() == 1 else position_ids
        mask = self._full_mask(mask, T, start, input_ids.device)
        x = self.model.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(self.inv_freq, position_ids, x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin, self.attention, cache, start, mask)
        if cache is not None:
            cache.length = start + T
        if last_only:
            x = x[:, -1:]
        x = self.model.norm(x)
        if not logits:
            return (None, x) if features else x
        out = inference_linear(x, self.lm_head.weight) if self.fused else self.lm_head(x)
        return (out, x) if features else out

    def _full_mask(self, mask: Tensor | None, T: int, start: int, device) -> Tensor | None:
        S = start + T
        if mask is not None:
            if mask.shape[-1] == T and S != T:  # tree mask among new tokens: the cached prefix stays visible
                prefix = torch.ones(*mask.shape[:-1], start, dtype=torch.bool, device=mask.device)
                mask = torch.cat([prefix, mask], dim=-1)
            if mask.shape[-2:] != (T, S):
                raise ValueError(f"attention mask must be [.., {T}, {T}] or [.., {T}, {S}], got {tuple(mask.shape)}")
            mask = mask.to(device=device, dtype=torch.bool)
            while mask.dim() < 4:
                mask = mask.unsqueeze(0)
            return mask
        window = self.config.sliding_window
        if window is not None and S > window:  # Mistral: each query sees at most `window` most recent slots
            q_slot = torch.arange(start, S, device=device)[:, None]
            k_slot = torch.arange(S, device=device)[None, :]
            return ((k_slot <= q_slot) & (k_slot > q_slot - window))[None, None]
        return None
