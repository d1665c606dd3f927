"""Load a Hugging Face layout model directory: config.json, safetensors weights (single or sharded), tokenizer.json.

Weights are memory-mapped by safetensors and moved straight into the requested dtype and device; nothing is
unpickled. Every problem a user can cause becomes an :class:`ExplorerError` with one readable line.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from torch import nn

from ..errors import ExplorerError
from ..memory import check_fits
from .decoder import CausalLM, ModelConfig, rope_inv_freq
from .gguf import is_gguf, read_gguf
from .hub import looks_like_repo_id, resolve_repo_id
from .progress import naming, report
from .prompts import PromptFormat, apply_special_tokens, encode_prompt

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_model_dirs() -> dict[str, Path]:
    """The shipped demo pair (trained by ``explorer train-demo``)."""
    return {"target": ASSETS / "models" / "demo-target", "draft": ASSETS / "models" / "demo-draft"}


def default_head_dirs() -> dict[str, Path]:
    """The demo target's shipped draft heads (``explorer train-heads``), by kind."""
    return {kind: ASSETS / "models" / f"demo-heads-{kind}" for kind in ("medusa", "eagle", "mtp")}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def parse_dtype(name: str | torch.dtype | None, device: str) -> torch.dtype:
    if name is None:
        return default_dtype(device)
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ExplorerError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


@dataclass
class LoadedModel:
    """A model ready to run, with what is needed to talk to it."""

    model: CausalLM
    tokenizer: Tokenizer
    config: ModelConfig
    path: Path
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    prompt_format: PromptFormat = field(default_factory=PromptFormat)  # BOS/EOS rules and chat template

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.lm_head.weight.dtype

    def encode(self, text: str) -> list[int]:
        """``tok(text)``: special tokens (BOS) as the tokenizer's configuration adds them."""
        return self.tokenizer.encode(text).ids

    def prompt_ids(self, prompt: str, chat: bool = False, system: str | None = None) -> list[int]:
        """The prompt as the model expects it: ``tok(prompt)``, or with ``chat`` the chat template's ids."""
        return encode_prompt(self.tokenizer, self.prompt_format, prompt, chat, system)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ExplorerError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"{what} is not valid JSON ({path}): {exc}") from None
    if not isinstance(data, dict):
        raise ExplorerError(f"{what} must hold a JSON object: {path}")
    return data


def check_model_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ExplorerError(f"model directory not found: {path}")
    if not path.is_dir():
        raise ExplorerError(f"not a model directory: {path}")
    return path


def load_config(path: str | Path) -> ModelConfig:
    return ModelConfig.from_hf(read_json(check_model_dir(path) / "config.json", "config.json"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    file = check_model_dir(path) / "tokenizer.json"
    if not file.is_file():
        raise ExplorerError(f"no tokenizer.json in {file.parent} (the explorer needs a fast tokenizer file)")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a plain Exception on bad files
        raise ExplorerError(f"cannot read tokenizer {file}: {str(exc).splitlines()[0]}") from None
    return tok  # its post-processor adds BOS where the model wants it, as in transformers' tok(text)


def load_prompt_format(path: Path) -> PromptFormat:
    """BOS/EOS flags and the chat template from tokenizer_config.json (and chat_template.jinja when present)."""
    config_file, template_file = path / "tokenizer_config.json", path / "chat_template.jinja"
    config = read_json(config_file, "tokenizer_config.json") if config_file.is_file() else {}
    template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
    return PromptFormat.from_tokenizer_config(config, template)


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: one ``model.safetensors`` or the shards an index names."""
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = read_json(index, "model.safetensors.index.json").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ExplorerError(f"{index} has no weight_map")
        files = [shard_path(path, index, name) for name in dict.fromkeys(weight_map.values())]
        for f in files:
            if not f.is_file():
                raise ExplorerError(f"shard {f.name} named in {index.name} is missing from {path}")
        return files
    if any(path.glob("*.bin")) or any(path.glob("*.pt")):
        raise ExplorerError(f"{path} has only pickle weights (.bin/.pt); the explorer loads safetensors only")
    raise ExplorerError(f"no model.safetensors or model.safetensors.index.json in {path}")


def shard_path(path: Path, index: Path, name: Any) -> Path:
    """A shard named by the index, which must be a plain file name inside the model directory (never ``../x`` or
    an absolute path: an index must not make the explorer read files elsewhere)."""
    if not isinstance(name, str) or not name:
        raise ExplorerError(f"{index}: weight_map values must be shard file names (got {name!r})")
    file = (path / name).resolve()
    if Path(name).is_absolute() or not file.is_relative_to(path.resolve()):
        raise ExplorerError(f"{index} names shard {name!r} outside the model directory {path}")
    return path / name


def resolve_device(device: str | None) -> str:
    """cpu, cuda or cuda:N (default: cuda when available); anything else is refused before a file is read."""
    import re

    device = device or default_device()
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ExplorerError(f"--device must be cpu, cuda or cuda:N (got {device!r})")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ExplorerError("CUDA was requested but torch sees no CUDA device")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ExplorerError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
FULL_FINITE_CHECK_ELEMENTS = 2 * 10**9  # above this many weights, each big tensor is checked on a sample of rows


def check_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Every weight a floating-point tensor of finite values (one NaN or Inf weight makes every logit NaN: the
    model would "generate" its token 0 forever). Small models are checked in full; huge ones on a strided sample of
    about a million values per tensor (set EXPLORER_SKIP_WEIGHT_CHECK=1 to skip the check)."""
    import os

    for key, t in tensors.items():
        if not t.is_floating_point():
            raise ExplorerError(
                f"weight {key} in {path} has dtype {str(t.dtype).removeprefix('torch.')}; the explorer needs "
                "floating-point weights (float32, float16 or bfloat16; quantized safetensors are not supported)"
            )
    if os.environ.get("EXPLORER_SKIP_WEIGHT_CHECK") == "1":
        return
    sample = sum(t.numel() for t in tensors.values()) > FULL_FINITE_CHECK_ELEMENTS
    for i, (key, t) in enumerate(tensors.items()):
        report("checking weights", i + 1, len(tensors))
        if t.device.type == "meta":
            continue
        view = t
        if sample and t.numel() > 2**20:
            rows = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(-1, 1)
            view = rows[:: max(1, rows.shape[0] * rows.shape[1] // 2**20)]
        if not bool(torch.isfinite(view).all()):
            bad = view[~torch.isfinite(view)]
            kind = "NaN" if bool(torch.isnan(bad).any()) else "Inf"
            raise ExplorerError(
                f"weight {key} in {path} holds {kind} values ({bad.numel()} of {view.numel()} checked); "
                "the checkpoint is damaged"
            )


def parameter_count(cfg: ModelConfig) -> int:
    """The number of weights a config describes (embedding, attention, MLP, norms, and an untied head)."""
    h, q, kv = cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    layer = h * q + 2 * h * kv + q * h + 3 * h * cfg.intermediate_size + 2 * h
    head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * h
    return cfg.vocab_size * h + cfg.num_layers * layer + h + head


def check_load_memory(cfg: ModelConfig, dtype: torch.dtype, device: str, path: Path) -> None:
    """Refuse, naming the figure, a model whose weights cannot fit in the free memory of ``device``."""
    n = parameter_count(cfg)
    check_fits(n * dtype.itemsize, f"{path.name}'s {n / 1e9:.2f} B weights in {str(dtype).removeprefix('torch.')}",
               device, "try --dtype bfloat16 or a smaller model")  # fmt: skip


def check_tokenizer_fits(tok: Tokenizer, cfg: ModelConfig, path: Path) -> None:
    """Every token id the tokenizer can produce must have a row in the embedding (a larger tokenizer than
    ``vocab_size`` would index past it). Padded embeddings (more rows than tokens) are fine."""
    n = tok.get_vocab_size(with_added_tokens=True)
    top = max(tok.get_vocab(with_added_tokens=True).values(), default=-1)
    if top >= cfg.vocab_size:
        raise ExplorerError(
            f"tokenizer.json in {path} has token ids up to {top} ({n} tokens), but config.json's vocab_size is "
            f"{cfg.vocab_size}: the tokenizer does not belong to these weights"
        )


def read_weights(files: list[Path], dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as f:
                keys = list(f.keys())
                for i, key in enumerate(keys):
                    report(f"reading {file.name}", i + 1, len(keys))
                    t = f.get_tensor(key)  # memory-mapped; .to() copies only when dtype/device differ
                    tensors[key] = t.to(device=device, dtype=dtype) if t.is_floating_point() else t
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ExplorerError(f"corrupt or truncated safetensors file {file}: {reason}") from None
    return tensors


@contextmanager
def _no_random_init():
    """Skip nn.Linear / nn.Embedding random init while building on the meta device: the weights are replaced
    right after, and the init on meta tensors drags in torch's Python reference ops (a second of imports that
    holds up every other thread, the GUI's included)."""
    saved = nn.Linear.reset_parameters, nn.Embedding.reset_parameters
    nn.Linear.reset_parameters = nn.Embedding.reset_parameters = lambda self: None
    try:
        yield
    finally:
        nn.Linear.reset_parameters, nn.Embedding.reset_parameters = saved


def build_model(cfg: ModelConfig, tensors: dict[str, torch.Tensor], path: Path) -> CausalLM:
    """Put loaded tensors into a model built on the meta device (no memory is allocated twice). Takes ownership
    of ``tensors`` (the dict is emptied)."""
    names = set(tensors)
    # Biases are decided by what the checkpoint holds (Qwen2 ships q/k/v biases without saying so in config).
    cfg = replace(
        cfg,
        qkv_bias=cfg.qkv_bias or "model.layers.0.self_attn.q_proj.bias" in names,
        o_bias=cfg.o_bias or "model.layers.0.self_attn.o_proj.bias" in names,
        mlp_bias=cfg.mlp_bias or "model.layers.0.mlp.gate_proj.bias" in names,
    )
    with torch.device("meta"), _no_random_init():
        model = CausalLM(cfg)
    expected = dict(model.state_dict())
    if cfg.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
        tensors.pop("lm_head.weight", None)  # some tied checkpoints still store a copy
    for key in [k for k in tensors if k.endswith("rotary_emb.inv_freq")]:
        tensors.pop(key)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ExplorerError(f"weights missing from {path}: {', '.join(missing[:3])}{more}")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 3} more)" if len(unexpected) > 3 else ""
        raise ExplorerError(f"unexpected weights in {path}: {', '.join(unexpected[:3])}{more}")
    check_weights(tensors, path)
    for key, ref in expected.items():
        if tuple(tensors[key].shape) != tuple(ref.shape):
            raise ExplorerError(
                f"weight {key} in {path} has shape {tuple(tensors[key].shape)}, config says {tuple(ref.shape)}"
            )
    model.load_state_dict(tensors, strict=False, assign=True)
    tensors.clear()  # the model holds them now: fusing can free each one as it moves, not all at the end
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.inv_freq = rope_inv_freq(cfg).to(model.lm_head.weight.device)  # the meta buffer, made real
    return model.eval().requires_grad_(False).fuse_for_inference()


def special_ids(path: Path, raw_cfg: dict[str, Any]) -> tuple[tuple[int, ...], int | None]:
    gen_file = path / "generation_config.json"
    gen = read_json(gen_file, "generation_config.json") if gen_file.is_file() else {}
    eos = gen.get("eos_token_id", raw_cfg.get("eos_token_id"))
    bos = gen.get("bos_token_id", raw_cfg.get("bos_token_id"))
    eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if isinstance(eos, int) else ())
    return eos_ids, bos if isinstance(bos, int) else None


def load_model(
    path: str | Path, dtype: str | torch.dtype | None = None, device: str | None = None, tokenizer: bool = True
) -> LoadedModel:
    """Load a Hugging Face layout directory, a GGUF file or a Hub repo id (``org/name[@revision]``) for inference
    (eval mode, no grads); its progress is reported under its name (explorer.models.progress)."""
    with naming(Path(str(path)).name):
        return _load_model(path, dtype, device, tokenizer)


def _load_model(path: str | Path, dtype: str | torch.dtype | None, device: str | None, tokenizer: bool) -> LoadedModel:
    if looks_like_repo_id(str(path)):
        path = resolve_repo_id(str(path))
    if is_gguf(path):
        return load_gguf_model(Path(path).expanduser(), dtype, device, tokenizer)
    path = check_model_dir(path)
    raw = read_json(path / "config.json", "config.json")
    cfg = ModelConfig.from_hf(raw)
    device = resolve_device(device)
    dt = parse_dtype(dtype, device)
    check_load_memory(cfg, dt, device, path)
    tok = load_tokenizer(path) if tokenizer else None
    if tok is not None:
        check_tokenizer_fits(tok, cfg, path)
    model = build_model(cfg, read_weights(weight_files(path), dt, device), path)
    eos, bos = special_ids(path, raw)
    return LoadedModel(model, tok, model.config, path, eos, bos, load_prompt_format(path))


def load_gguf_model(path: Path, dtype: str | torch.dtype | None, device: str | None, tokenizer: bool) -> LoadedModel:
    """A GGUF file: dequantized into ``dtype``, q/k rows back in Hugging Face order, tokenizer from its metadata."""
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ExplorerError("CUDA was requested but torch sees no CUDA device")
    device = resolve_device(device)
    ckpt = read_gguf(path, parse_dtype(dtype, device), device, tokenizer)
    model = build_model(ModelConfig.from_hf(ckpt.raw_config), ckpt.tensors, path)
    if ckpt.rope_freqs is not None:  # Llama 3.x: llama.cpp stores the frequency scaling as a tensor
        model.inv_freq = model.inv_freq / ckpt.rope_freqs.to(model.inv_freq.device)
    if ckpt.tokenizer is not None:
        apply_special_tokens(ckpt.tokenizer, ckpt.prompt_format)
    return LoadedModel(model, ckpt.tokenizer, model.config, path, ckpt.eos_token_ids, ckpt.bos_token_id,
                       ckpt.prompt_format)  # fmt: skip
