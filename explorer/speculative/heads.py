"""Draft heads that live on the target itself (Qt-free): Medusa, EAGLE and multi-token prediction (MTP).

All three read the target's *feature* f_t: its final hidden state after the last RMSNorm, the vector its LM head
turns into the logits of token t + 1. They reuse the target's frozen LM head (and, for EAGLE / MTP, its token
embedding), so a head set costs a few small matmuls per drafted token and stores only its own weights.

- ``medusa`` (Cai et al. 2024): K residual blocks f + SiLU(W·f + b); head k predicts token t + k + 1 from f_t alone.
  Candidates are a static tree of the heads' top-k ("choices": each path is one rank per head).
- ``eagle`` (Li et al. 2024): one decoder layer (attention over its own KV cache of past entries, then an MLP)
  that maps [f_t ; embed(x_{t+1})] (projected from 2d to d) to the next feature f̂_{t+1}; it then runs on its own
  features, so it drafts a dynamic tree (EAGLE-2).
- ``mtp`` (DeepSeek-V3): D sequential modules; module k joins RMSNorm(h^{k-1}) with RMSNorm(embed(x_{t+k})),
  projects 2d → d and applies one block. Our block is a pre-norm SwiGLU MLP *without* attention (DeepSeek's has
  attention over the sequence at depth k; drafting from one position here, the MLP keeps each module's cost to two
  small matmuls). Drafts a chain.

A head directory holds ``config.json`` (``kind``, sizes, the target it was trained on, Medusa's tuned tree),
``heads.safetensors`` and a model card. A published Medusa file (``medusa_lm_head.safetensors``, keys
``{i}.{j}.linear.weight`` / ``bias`` and ``{i}.{n}.weight``) loads when its shapes fit the target.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ..errors import ExplorerError
from ..models.checkpoint import ASSETS, LoadedModel
from ..models.decoder import (
    MLP,
    Attention,
    DecoderLayer,
    KVCache,
    ModelConfig,
    RMSNorm,
    apply_rope,
    inference_linear,
    matvec,
    rope_cos_sin,
    rope_inv_freq,
)
from ..models.decoder import sdpa_attention as attention

KINDS = ("medusa", "eagle", "mtp")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "heads.safetensors"
MEDUSA_FILE = "medusa_lm_head.safetensors"


# -- the modules -----------------------------------------------------------------------------------------------


def lm_logits(x: Tensor, lm_head: Tensor) -> Tensor:
    """x · lm_headᵀ for a few rows, the way the target's own LM head multiplies them when decoding (a GEMM over
    the row-major weight rather than the slow x·Wᵀ path: see :func:`inference_linear`)."""
    return inference_linear(x, lm_head) if not torch.is_grad_enabled() else x @ lm_head.T


class _InferenceLinear(nn.Linear):
    """A loaded head's linear layers multiply like the target's fused ones (drafting is a few rows at a time),
    through their half-precision copy when they have one (see :func:`for_inference`)."""

    inference: tuple[Tensor, Tensor | None] | None = None

    def forward(self, x: Tensor) -> Tensor:
        return inference_linear(x, *(self.inference or (self.weight, self.bias)))


def _half(pair: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
    """A weight's float16 copy (its bias stays as it is: it is added after the product, in float32)."""
    return pair[0].detach().to(torch.float16).contiguous(), pair[1]


def for_inference(module: nn.Module, half: bool | None = None) -> nn.Module:
    """Make a loaded (frozen) head set multiply as the target does when decoding: fused q/k/v and gate/up, and
    every linear through :func:`inference_linear`. ``half`` (default: float32 heads on the CPU): the products
    read float16 copies of the weights — the precision head files store them in — because drafting multiplies
    one or two rows by weights that the target's forward has just pushed out of the caches, and there 16-bit
    weights through the matrix-vector kernel take less than half the time (see ``_half_linear``). Drafts may
    differ in the last bits; verification by the float32 target keeps decoding exact. The state dict is
    unchanged."""
    w = next(module.parameters())
    if half is None:
        half = w.device.type == "cpu" and w.dtype == torch.float32
    for m in module.modules():
        if isinstance(m, Attention):
            m.fuse()
            if half:
                m.qkv, m.out = _half(m.qkv), _half(m.out)
        elif isinstance(m, MLP):
            m.fuse()
            if half:
                m.gate_up, m.down = _half(m.gate_up), _half(m.down)
        elif type(m) is nn.Linear:
            m.__class__ = _InferenceLinear
            if half:
                m.inference = _half((m.weight, m.bias))
    module.half_weights = half
    return module


class ResBlock(nn.Module):
    """Medusa's block: f + SiLU(W·f + b); W starts at zero, so an untrained head equals the LM head (token t + 1)."""

    def __init__(self, d: int):
        super().__init__()
        self.linear = nn.Linear(d, d)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + F.silu(self.linear(x))


class MedusaHeads(nn.ModuleList):
    """K heads, each ``layers`` ResBlocks and optionally its own LM head (published files have one; ours share the
    target's). Indexed like Medusa's ``medusa_head`` so its state-dict keys match published files."""

    half_weights = False  # set by for_inference: multiply through float16 copies of the weights

    def __init__(self, d: int, vocab: int, num_heads: int, layers: int = 1, own_lm_head: bool = False):
        super().__init__(
            nn.Sequential(*[ResBlock(d) for _ in range(layers)], *([nn.Linear(d, vocab, bias=False)] * own_lm_head))
            for _ in range(num_heads)
        )
        self.layers, self.own_lm_head = layers, own_lm_head

    def features(self, f: Tensor, count: int | None = None) -> list[Tensor]:
        return [head[: self.layers](f) for head in list(self)[:count]]

    def logits(self, f: Tensor, lm_head: Tensor, count: int | None = None) -> Tensor:
        """[K, ..., V]: each head's logits for f [..., d] (the first ``count`` heads only: a shallow tree needs
        no more)."""
        feats = self.features(f, count)
        if self.own_lm_head:
            return torch.stack([head[self.layers](x) for head, x in zip(self, feats, strict=False)])
        return lm_logits(torch.stack(feats), lm_head)


class EagleHead(nn.Module):
    """fc([f_t ; e(x_{t+1})]) → one decoder layer (the target's layer shape, its MLP optionally narrower: on a
    small target the layer's weights are most of what a drafted token streams) → f̂_{t+1}, with its own KV cache."""

    half_weights = False  # set by for_inference: multiply through float16 copies of the weights

    def __init__(self, cfg: ModelConfig, intermediate: int | None = None):
        super().__init__()
        self.cfg = cfg = replace(cfg, num_layers=1, intermediate_size=intermediate or cfg.intermediate_size)
        d = cfg.hidden_size
        self.fc = nn.Linear(2 * d, d)
        self.layer = DecoderLayer(cfg, 0)
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def new_cache(self, slots: int, batch: int = 1) -> KVCache:
        w = self.fc.weight
        return KVCache(self.cfg, slots, batch, w.dtype, w.device)

    def rope_table(self, positions: int) -> tuple[Tensor, Tensor]:
        """RoPE's cos and signed sin for positions 0 .. positions − 1 ([1, 1, positions, head_dim] each): drafting
        slices them instead of computing a dozen small operations per forward (the same numbers)."""
        w = self.fc.weight
        return rope_cos_sin(self.inv_freq, torch.arange(positions, device=w.device)[None], w.dtype)

    def forward(self, feats: Tensor, emb: Tensor, position_ids: Tensor | None, cache: KVCache | None = None,
                mask: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:  # fmt: skip
        """feats, emb [B, T, d]; position_ids [B, T], or None with ``rope`` (cos and sin already at the positions,
        broadcastable to [B, 1, T, head_dim]); mask None (causal) or bool [T, cached + T]."""
        x = self.fc(torch.cat([feats, emb], dim=-1))
        cos, sin = rope if rope is not None else rope_cos_sin(self.inv_freq, position_ids, x.dtype)
        start = cache.length if cache is not None else 0
        if mask is not None:
            mask = mask[None, None]
        out = self.layer(x, cos, sin, attention, cache, start, mask)
        if cache is not None:
            cache.length = start + x.shape[1]
        return out

    @property
    def can_forward_one(self) -> bool:
        return self.layer.self_attn.qkv is not None and not self.cfg.qk_norm

    def forward_one(self, feat: Tensor, emb: Tensor, cos: Tensor, sin: Tensor, cache: KVCache) -> Tensor:
        """One entry at the end of the cache, attending to all of it (a chain's next depth): :meth:`forward`'s
        math on 1-D vectors in half the operations — one matrix-vector product per fused weight, no module calls,
        no mask. Drafting is bound by per-operation overhead on a small target (a 1-row forward spent 0.1 of its
        0.5 ms in products). Needs :func:`for_inference`'s fused weights. feat, emb [d]; cos, sin [head_dim] at the
        entry's position; returns EAGLE's feature [d]."""
        layer, cfg = self.layer, self.cfg
        attn, mlp, hd = layer.self_attn, layer.mlp, cfg.head_dim
        H, Hkv = cfg.num_heads, cfg.num_kv_heads
        x = matvec(torch.cat([feat, emb]), *(self.fc.inference or (self.fc.weight, self.fc.bias)))
        qkv = matvec(layer.input_layernorm(x), *attn.qkv).view(H + 2 * Hkv, hd)
        qk = apply_rope(qkv[: H + Hkv], cos, sin)
        slot = cache.length
        keys, values = cache.write(0, slot, qk[H:, None], qkv[H + Hkv :, None])
        cache.length = slot + 1
        out = F.scaled_dot_product_attention(qk[None, :H, None], keys, values, scale=hd**-0.5, enable_gqa=H != Hkv)
        x = x + matvec(out.view(-1), *attn.out)
        gate, up = matvec(layer.post_attention_layernorm(x), *mlp.gate_up).chunk(2)
        return x + matvec(F.silu(gate) * up, *mlp.down)


class MTPModule(nn.Module):
    def __init__(self, cfg: ModelConfig, intermediate: int):
        super().__init__()
        d, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.norm_h, self.norm_e = RMSNorm(d, eps), RMSNorm(d, eps)
        self.proj = nn.Linear(2 * d, d, bias=False)
        self.mlp_norm = RMSNorm(d, eps)
        self.mlp = MLP(replace(cfg, intermediate_size=intermediate, mlp_bias=False))
        self.out_norm = RMSNorm(d, eps)

    def forward(self, h: Tensor, emb: Tensor) -> tuple[Tensor, Tensor]:
        """(the module's hidden state h^k, its output feature for the LM head)."""
        x = self.proj(torch.cat([self.norm_h(h), self.norm_e(emb)], dim=-1))
        x = x + self.mlp(self.mlp_norm(x))
        return x, self.out_norm(x)


class MTPModules(nn.ModuleList):
    half_weights = False  # set by for_inference: multiply through float16 copies of the weights

    def __init__(self, cfg: ModelConfig, num_modules: int, intermediate: int):
        super().__init__(MTPModule(cfg, intermediate) for _ in range(num_modules))


# -- a loaded head set -------------------------------------------------------------------------------------------


@dataclass
class Heads:
    """A head set bound to its target: the module, its config, and where it came from."""

    kind: str
    module: nn.Module
    config: dict
    path: Path | None
    lm_rows: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)
    """(the target's LM-head weight, its draft-vocabulary rows): copied once, not per run (see the engine)."""

    @property
    def count(self) -> int:
        """Medusa heads / MTP modules (how deep a chain or tree can go); EAGLE: 1 (it runs on its own output)."""
        return 1 if self.kind == "eagle" else len(self.module)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else f"{self.kind} (in memory)"

    @property
    def draft_vocab(self) -> list[int] | None:
        """The tokens the heads draft from (FR-Spec: the most frequent ones in the target's own outputs), or None
        for the whole vocabulary. Drafting multiplies only these rows of the LM head; the target still verifies
        against the whole vocabulary, so greedy stays exact and sampling lossless (q is 0 outside the set)."""
        return self.config.get("draft_vocab") or None

    def medusa_choices(self) -> list[tuple[int, ...]]:
        choices = self.config.get("medusa_choices")
        if choices:
            return [tuple(c) for c in choices]
        return default_medusa_choices(self.count)


def build_heads(kind: str, cfg: ModelConfig, num_heads: int, **kw) -> nn.Module:
    if kind == "medusa":
        return MedusaHeads(cfg.hidden_size, cfg.vocab_size, num_heads, kw.get("layers", 1), kw.get("own", False))
    if kind == "eagle":
        return EagleHead(cfg, kw.get("intermediate"))
    if kind == "mtp":
        return MTPModules(cfg, num_heads, kw.get("intermediate") or 2 * cfg.hidden_size)
    raise ExplorerError(f"unknown head kind {kind!r}; one of {', '.join(KINDS)}")


def default_medusa_choices(num_heads: int) -> list[tuple[int, ...]]:
    """A small tree when nothing was tuned: top-2 of head 1, then the best path's top-1 of the others."""
    choices = [(0,), (1,)]
    for k in range(2, num_heads + 1):
        choices.append((0,) * k)
    return choices


def parse_choices(text: str) -> list[tuple[int, ...]]:
    """"0,1,0.0,0.1,0.0.0" → [(0,), (1,), (0, 0), (0, 1), (0, 0, 0)]: one path a comma, ranks joined by dots."""
    try:
        paths = [tuple(int(r) for r in part.strip().split(".")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ExplorerError(f"medusa tree {text!r}: paths are ranks joined by dots, separated by commas") from None
    check_choices(paths)
    return paths


def format_choices(paths: list[tuple[int, ...]]) -> str:
    return ",".join(".".join(str(r) for r in p) for p in paths)


def check_choices(paths: list[tuple[int, ...]], num_heads: int | None = None) -> None:
    have = set(paths)
    for p in paths:
        if not p or min(p) < 0:
            raise ExplorerError(f"medusa tree path {format_choices([p])!r} must hold ranks >= 0")
        if len(p) > 1 and p[:-1] not in have:
            raise ExplorerError(f"medusa tree path {format_choices([p])} lacks its parent {format_choices([p[:-1]])}")
        if num_heads is not None and len(p) > num_heads:
            raise ExplorerError(f"medusa tree path {format_choices([p])} is deeper than the {num_heads} heads")
    if len(have) != len(paths):
        raise ExplorerError("medusa tree lists a path twice")


def load_heads(path: str | Path, target: LoadedModel) -> Heads:
    """Read a head directory (ours or a published Medusa file) and check that it fits ``target``."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ExplorerError(f"heads directory not found: {path}")
    cfg = target.config
    if (path / CONFIG_FILE).is_file():
        try:
            config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ExplorerError(f"heads config is not valid JSON ({path / CONFIG_FILE}): {exc}") from None
    else:
        config = {}
    weights = path / WEIGHTS_FILE if (path / WEIGHTS_FILE).is_file() else path / MEDUSA_FILE
    if not weights.is_file():
        raise ExplorerError(f"no {WEIGHTS_FILE} or {MEDUSA_FILE} in {path}")
    tensors = _read(weights)
    kind = config.get("kind", "medusa" if weights.name == MEDUSA_FILE else None)
    if kind not in KINDS:
        raise ExplorerError(f"{path / CONFIG_FILE} must name a kind: one of {', '.join(KINDS)} (got {kind!r})")
    for key in ("hidden_size", "vocab_size"):
        if key in config and config[key] != getattr(cfg, key):
            raise ExplorerError(
                f"heads in {path} were made for {key} {config[key]}, the target {target.name} has {getattr(cfg, key)}"
            )
    if kind == "medusa":
        heads = sorted({int(k.split(".")[0]) for k in tensors})
        layers = max(int(k.split(".")[1]) for k in tensors if k.endswith("linear.weight")) + 1 if tensors else 0
        own = any(k == f"0.{layers}.weight" for k in tensors)
        module = MedusaHeads(cfg.hidden_size, cfg.vocab_size, len(heads), layers, own)
    else:
        n = int(config.get("num_heads", 1))
        inter = config.get("intermediate_size")
        if inter is not None and (type(inter) is not int or inter < 1):
            raise ExplorerError(f"{path / CONFIG_FILE}: intermediate_size must be a positive integer (got {inter!r})")
        module = build_heads(kind, cfg, n, intermediate=inter)
    expected = module.state_dict()
    if set(expected) != set(tensors):
        missing = sorted(set(expected) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(expected))[:3]
        raise ExplorerError(f"{weights} does not hold {kind} heads for this target (missing {missing}, extra {extra})")
    for key, ref in expected.items():
        if tuple(tensors[key].shape) != tuple(ref.shape):
            raise ExplorerError(
                f"head weight {key} in {weights} has shape {tuple(tensors[key].shape)}; the target "
                f"{target.name} (hidden {cfg.hidden_size}, vocab {cfg.vocab_size}) needs {tuple(ref.shape)}"
            )
    module.load_state_dict({k: v.to(target.dtype) for k, v in tensors.items()})
    module = for_inference(module.to(target.device).eval().requires_grad_(False))
    vocab = config.get("draft_vocab")
    if vocab is not None:
        ok = isinstance(vocab, list) and all(isinstance(t, int) and 0 <= t < cfg.vocab_size for t in vocab)
        if not ok or len(set(vocab)) != len(vocab):
            raise ExplorerError(
                f"{path / CONFIG_FILE}: draft_vocab must be distinct token ids in 0..{cfg.vocab_size - 1}"
            )
        if kind == "medusa" and module.own_lm_head:
            raise ExplorerError(f"{path / CONFIG_FILE}: draft_vocab needs heads that share the target's LM head; "
                                "these Medusa heads have their own")  # fmt: skip
    heads = Heads(kind, module, config, path)
    if kind == "medusa":
        check_choices(heads.medusa_choices(), heads.count)
    return heads


def _read(file: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ExplorerError(f"corrupt or truncated safetensors file {file}: {str(exc).splitlines()[0]}") from None


def find_heads(model_dir: str | Path) -> dict[str, Path]:
    """Head directories for a model: ``DIR/heads-KIND`` inside it, or ``NAME-heads-KIND`` / (for the demo target)
    ``demo-heads-KIND`` beside it (NAME without ``.gguf`` for a GGUF file), or shipped in ``assets/models`` under
    the same name (SmolLM2's, whose GGUF lives in the user's cache). The first found per kind."""
    model_dir = Path(model_dir)
    name = model_dir.name.removesuffix(".gguf")
    found: dict[str, Path] = {}
    for kind in KINDS:
        for cand in (
            model_dir / f"heads-{kind}",
            model_dir.parent / f"{name}-heads-{kind}",
            model_dir.parent / f"{name.removesuffix('-target')}-heads-{kind}",
            ASSETS / "models" / f"{name}-heads-{kind}",
        ):
            if (cand / CONFIG_FILE).is_file():
                found[kind] = cand
                break
    return found


# -- capturing the target's features ---------------------------------------------------------------------------


@contextmanager
def capture_features(model):
    """Within the block, ``out[0]`` is the target's last final-norm output (its features, [B, T, d])."""
    out: list[Tensor] = []
    handle = model.model.norm.register_forward_hook(lambda mod, args, result: out.insert(0, result))
    try:
        yield out
    finally:
        handle.remove()
