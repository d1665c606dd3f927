"""Open a llama.cpp GGUF file as a Hugging Face-style checkpoint: config, weights and tokenizer from one file.

The file is memory-mapped by the ``gguf`` package; each tensor is dequantized in row chunks straight into a
preallocated tensor of the requested dtype, so the model is never held twice. llama.cpp's converter interleaves the
two rotary halves of every q/k head for the ``llama`` architecture; that permutation is undone here. The tokenizer
is rebuilt from the metadata as a ``tokenizers`` Tokenizer (byte-level BPE with merges, or a SentencePiece-style
vocabulary with scores), with its special tokens, BOS/EOS ids and chat template.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from ..errors import ExplorerError
from .progress import report
from .prompts import PromptFormat

ARCHITECTURES = ("llama", "qwen2", "qwen3")  # GGUF names; Mistral-style models are written as "llama"
ROWS_PER_CHUNK = 2048  # rows dequantized at once: bounds the float32 scratch to a few MB per chunk

LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}

# How text is split before byte-level BPE, by `tokenizer.ggml.pre` (the regexes of the original tokenizers).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLITS = {"llama-bpe": LLAMA3_SPLIT, "llama3": LLAMA3_SPLIT, "smaug-bpe": LLAMA3_SPLIT, "qwen2": QWEN2_SPLIT}
CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values
EOS_KEYS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")  # generation stops at either


@dataclass
class GGUFCheckpoint:
    """What a GGUF file holds, in the shapes and names ``load_model`` builds from."""

    raw_config: dict[str, Any]  # a config.json-style dict
    tensors: dict[str, torch.Tensor]  # Hugging Face names and layout
    tokenizer: Tokenizer | None
    prompt_format: PromptFormat
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    rope_freqs: torch.Tensor | None  # Llama 3.x frequency factors (inv_freq is divided by them)


def is_gguf(path: str | Path) -> bool:
    path = Path(path).expanduser()
    if path.suffix.lower() == ".gguf":
        return True
    try:
        with open(path, "rb") as f:
            return path.is_file() and f.read(4) == b"GGUF"
    except OSError:
        return False


VALUE_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # torch order: slowest dimension first (GGUF lists the fastest first)
    qtype: int
    data: np.ndarray  # uint8 [rows, bytes per row], memory-mapped


class _Cursor:
    """Reads little-endian GGUF values from a memory-mapped file (through a memoryview: no copies per value)."""

    def __init__(self, buf: np.ndarray):
        self.view, self.size, self.pos = memoryview(buf), len(buf), 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.size:
            raise ExplorerError("the file ends inside its header")
        out = self.view[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return str(self.take(self.scalar("<Q")), "utf-8", errors="replace")

    def strings(self, n: int) -> list[str]:
        """n strings in a row (a vocabulary, merges): the hot loop of reading a header, kept tight."""
        view, size, pos, out = self.view, self.size, self.pos, []
        unpack = struct.Struct("<Q").unpack_from
        for _ in range(n):
            if pos + 8 > size:
                raise ExplorerError("the file ends inside its header")
            (length,) = unpack(view, pos)
            pos += 8
            if pos + length > size:
                raise ExplorerError("the file ends inside its header")
            out.append(str(view[pos : pos + length], "utf-8", errors="replace"))
            pos += length
        self.pos = pos
        return out

    def value(self, kind: int):
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            inner, n = self.scalar("<I"), self.scalar("<Q")
            if inner in VALUE_FORMATS and inner != 7:
                dt = np.dtype(VALUE_FORMATS[inner])
                return np.frombuffer(self.take(n * dt.itemsize), dtype=dt).tolist()
            if inner == STRING:
                return self.strings(n)
            return [self.value(inner) for _ in range(n)]
        if kind not in VALUE_FORMATS:
            raise ExplorerError(f"unknown GGUF value type {kind}")
        return self.scalar(VALUE_FORMATS[kind])


def read_file(path: Path) -> tuple[dict[str, Any], list[TensorInfo]]:
    """The metadata and the (memory-mapped) tensors of a GGUF file (versions 2 and 3). Our own reader: gguf's
    GGUFReader makes a numpy view per array element and takes seconds on a 49k-token vocabulary."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if not path.is_file():
        raise ExplorerError(f"GGUF file not found: {path}")
    try:
        buf = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise ExplorerError(f"cannot read GGUF file {path}: {exc}") from None
    cur = _Cursor(buf)
    try:
        if bytes(cur.take(4)) != b"GGUF":
            raise ExplorerError("it does not start with the GGUF magic")
        version = cur.scalar("<I")
        if version not in (2, 3):
            raise ExplorerError(f"GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_kv = cur.scalar("<Q"), cur.scalar("<Q")
        meta = {}
        for _ in range(n_kv):
            key = cur.string()
            meta[key] = cur.value(cur.scalar("<I"))
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            dims = [cur.scalar("<Q") for _ in range(cur.scalar("<I"))]
            infos.append((name, tuple(reversed(dims)), cur.scalar("<I"), cur.scalar("<Q")))
    except ExplorerError as exc:
        raise ExplorerError(f"corrupt or truncated GGUF file {path}: {exc}") from None
    except (struct.error, UnicodeDecodeError, OverflowError, ValueError) as exc:
        raise ExplorerError(f"corrupt GGUF file {path}: {exc}") from None
    align = int(meta.get("general.alignment", 32))
    start = -(-cur.pos // align) * align
    tensors = []
    for name, shape, qtype, offset in infos:
        try:
            kind = GGMLQuantizationType(qtype)
            block, size = GGML_QUANT_SIZES[kind]
        except (ValueError, KeyError):
            raise ExplorerError(f"GGUF tensor {name} has an unknown type {qtype}") from None
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        row_bytes = shape[-1] // block * size
        begin, end = start + offset, start + offset + rows * row_bytes
        if end > len(buf):
            raise ExplorerError(
                f"truncated GGUF file {path}: tensor {name} ends at byte {end}, the file has {len(buf)} bytes"
            )
        tensors.append(TensorInfo(name, shape, qtype, buf[begin:end].reshape(rows, row_bytes)))
    return meta, tensors


def config_from_metadata(meta: dict[str, Any], tensor_names: set[str], vocab_size: int) -> dict[str, Any]:
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ExplorerError(
            f"unsupported GGUF architecture {arch!r}; supported: {', '.join(ARCHITECTURES)} (Llama-family models)"
        )

    def need(key: str):
        if f"{arch}.{key}" not in meta:
            raise ExplorerError(f"GGUF metadata lacks {arch}.{key}")
        return meta[f"{arch}.{key}"]

    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    raw: dict[str, Any] = {
        "model_type": arch,
        "vocab_size": int(meta.get(f"{arch}.vocab_size", vocab_size)),
        "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get(f"{arch}.attention.head_count_kv", heads)),
        "head_dim": int(meta.get(f"{arch}.attention.key_length", hidden // heads)),
        "rms_norm_eps": float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get(f"{arch}.context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "hidden_act": "silu",
    }
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling == "linear":
        raw["rope_scaling"] = {"rope_type": "linear", "factor": float(meta[f"{arch}.rope.scaling.factor"])}
    elif scaling not in (None, "none"):
        raise ExplorerError(f"unsupported GGUF rope scaling {scaling!r}; supported: none, linear")
    return raw


def hf_name(name: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; None for tensors we do not load."""
    base, _, kind = name.rpartition(".")
    if base.startswith("blk."):
        _, layer, part = base.split(".", 2)
        return f"model.layers.{layer}.{LAYER_NAMES[part]}.{kind}" if part in LAYER_NAMES else None
    return f"{TOP_NAMES[base]}.{kind}" if base in TOP_NAMES else None


def unpermute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order: per head, rows were (head_dim/2, 2) interleaved; HF has (2, head_dim/2)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def dequantize_into(t: TensorInfo, dtype: torch.dtype) -> torch.Tensor:
    """One tensor in torch layout, dequantized chunk by chunk into ``dtype`` (a float32 scratch of one chunk)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    qtype = GGMLQuantizationType(t.qtype)
    rows, cols = t.data.shape[0], t.shape[-1]
    out = torch.empty(rows, cols, dtype=dtype)
    for begin in range(0, rows, ROWS_PER_CHUNK):
        end = min(rows, begin + ROWS_PER_CHUNK)
        try:
            block = dequantize(np.ascontiguousarray(t.data[begin:end]), qtype)
        except NotImplementedError:
            raise ExplorerError(f"GGUF tensor {t.name} uses {qtype.name}, a quantization gguf cannot read") from None
        out[begin:end] = torch.from_numpy(np.array(block, dtype=np.float32).reshape(end - begin, cols))  # writable
    return out.reshape(t.shape)


def read_tensors(infos: list[TensorInfo], raw: dict[str, Any], dtype: torch.dtype, device: str, path: Path):
    arch = raw["model_type"]
    tensors: dict[str, torch.Tensor] = {}
    rope_freqs = None
    for i, t in enumerate(infos):
        report("dequantizing tensors", i + 1, len(infos))
        if t.name == "rope_freqs.weight":
            rope_freqs = dequantize_into(t, torch.float32).reshape(-1)
            continue
        name = hf_name(t.name)
        if name is None:
            continue
        try:
            w = dequantize_into(t, dtype)
        except ExplorerError:
            raise
        except Exception as exc:
            raise ExplorerError(f"corrupt or truncated GGUF file {path}: tensor {t.name}: {exc}") from None
        if arch == "llama" and t.name.endswith(("attn_q.weight", "attn_k.weight", "attn_q.bias", "attn_k.bias")):
            heads = raw["num_attention_heads"] if ".attn_q." in t.name else raw["num_key_value_heads"]
            w = unpermute_rows(w, heads)
        tensors[name] = w.to(device)
    return tensors, rope_freqs


def build_tokenizer(meta: dict[str, Any]) -> Tokenizer:
    """A ``tokenizers`` Tokenizer from ``tokenizer.ggml.*``: byte-level BPE (``gpt2``) or SentencePiece (``llama``)."""
    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise ExplorerError("this GGUF file has no tokenizer (tokenizer.ggml.tokens)")
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if kind == "gpt2":
        tok = _byte_level_bpe(tokens, meta.get("tokenizer.ggml.merges") or [], meta.get("tokenizer.ggml.pre"))
    elif kind == "llama":
        tok = _sentencepiece_bpe(tokens, meta.get("tokenizer.ggml.scores"), types, meta)
    else:
        raise ExplorerError(f"unsupported GGUF tokenizer {kind!r}; supported: gpt2 (byte-level BPE), llama")
    kinds = list(zip(tokens, types, strict=False))
    control = [AddedToken(t, special=True, normalized=False) for t, k in kinds if k == CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, k in kinds if k == USER_DEFINED]
    if kind == "gpt2":  # a "control" token outside the byte alphabet is a converter mislabel; adding it changes ids
        alphabet = set(_byte_alphabet().values())
        control = [t for t in control if set(t.content) <= alphabet]
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    return tok


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's printable spelling of the 256 byte values."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    spelled, extra = {}, 0
    for b in range(256):
        if b in printable:
            spelled[b] = chr(b)
        else:
            spelled[b] = chr(256 + extra)
            extra += 1
    return spelled


def _byte_level_bpe(tokens: list[str], merges: list[str], pre: str | None) -> Tokenizer:
    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {}
    for i, t in enumerate(tokens):
        t = t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))
        vocab.setdefault(t, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab, pairs, fuse_unk=False))
    if pre == "smollm":  # SmolLM's own tokenizer: every digit alone, then GPT-2's byte-level split
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    elif pre in SPLITS:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(tokens: list[str], scores, types, meta: dict[str, Any]) -> Tokenizer:
    """SentencePiece-BPE as Llama-2's tokenizer.json spells it: ▁ for spaces, byte fallback, merges ranked by the
    score of the merged piece (the file stores scores, not merges)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = meta.get("tokenizer.ggml.merges")
    if merges:
        pairs = [tuple(m.split(" ", 1)) for m in merges]
    else:
        scores = scores if scores is not None else [0.0] * len(tokens)
        ranked = []
        for t, i in vocab.items():
            if types[i] != 1 or len(t) < 2:
                continue
            for cut in range(1, len(t)):
                left, right = t[:cut], t[cut:]
                if left in vocab and right in vocab:
                    ranked.append((-scores[i], vocab[left], vocab[right], left, right))
        ranked.sort()
        pairs = [(left, right) for *_, left, right in ranked]
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[unk_id] if isinstance(unk_id, int) and unk_id < len(tokens) else None
    tok = Tokenizer(models.BPE(vocab, pairs, unk_token=unk, fuse_unk=True, byte_fallback=True))
    steps = [normalizers.Replace(" ", "▁")]
    if meta.get("tokenizer.ggml.add_space_prefix", True):
        steps.insert(0, normalizers.Prepend("▁"))
    tok.normalizer = normalizers.Sequence(steps)
    strip = [decoders.Strip(" ", 1, 0)] if meta.get("tokenizer.ggml.add_space_prefix", True) else []
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *strip])
    return tok


def prompt_format(meta: dict[str, Any]) -> PromptFormat:
    tokens = meta.get("tokenizer.ggml.tokens") or []

    def text(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}")
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    if add_bos is None:  # llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise
        add_bos = meta.get("tokenizer.ggml.model") == "llama"
    return PromptFormat(
        bos_token=text("bos_token_id"),
        eos_token=text("eos_token_id"),
        add_bos_token=bool(add_bos),
        add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        chat_template=meta.get("tokenizer.chat_template") or None,
    )


def read_gguf(path: str | Path, dtype: torch.dtype, device: str, tokenizer: bool = True) -> GGUFCheckpoint:
    """Config, weights (dequantized into ``dtype`` on ``device``) and tokenizer of a GGUF file."""
    path = Path(path).expanduser()
    meta, infos = read_file(path)
    embedding = next((t.shape[0] for t in infos if t.name == "token_embd.weight"), 0)
    raw = config_from_metadata(meta, {t.name for t in infos}, embedding)
    tensors, rope_freqs = read_tensors(infos, raw, dtype, device, path)
    tok = build_tokenizer(meta) if tokenizer else None
    eos_ids = tuple(dict.fromkeys(meta[k] for k in EOS_KEYS if isinstance(meta.get(k), int)))
    bos = meta.get("tokenizer.ggml.bos_token_id")
    return GGUFCheckpoint(raw, tensors, tok, prompt_format(meta), eos_ids, bos if isinstance(bos, int) else None,
                          rope_freqs)  # fmt: skip
