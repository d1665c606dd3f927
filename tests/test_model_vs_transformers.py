"""Our decoder against Hugging Face transformers, on tiny random-weight checkpoints that transformers itself writes.

Each case builds a transformers model (hidden 64, 2 layers, vocab 128), gives every tensor random values of a
useful size (norm weights and biases included, so nothing is a silent 1 or 0), saves it with ``save_pretrained``
and loads the directory back through :func:`explorer.models.checkpoint.load_model`. Logits must agree to 1e-4 in
float32: over a full sequence, through our KV cache (prefill then one token at a time), and greedy decoding must
pick the same tokens as ``transformers.generate``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")

from explorer.models.checkpoint import load_model  # noqa: E402
from explorer.models.decoder import rope_inv_freq  # noqa: E402
from explorer.models.generate import generate  # noqa: E402

ATOL = 1e-4
VOCAB = 128
SEQ = 24
BATCH = 2
NEW_TOKENS = 20

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # Small on purpose: with head_dim 16 and theta 1e4 the wavelengths (6.3, 19.9, 62.8, ...) then fall in all
    # three llama3 bands (kept < 8, blended 8..32, slowed by `factor` > 32).
    "original_max_position_embeddings": 32,
}
LINEAR_ROPE = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
)

# name -> (config class, model class, config kwargs, options)
CASES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "llama3-rope": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(rope_parameters=LLAMA3_ROPE, tie_word_embeddings=False),
        {},
    ),
    "llama-linear-rope": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(rope_parameters=LINEAR_ROPE, tie_word_embeddings=False),
        {},
    ),
    "qwen2-bias-tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(tie_word_embeddings=True), {}),
    "qwen3-qknorm-head_dim": (
        "Qwen3Config",
        "Qwen3ForCausalLM",
        dict(num_attention_heads=4, head_dim=32, tie_word_embeddings=False),
        {},
    ),
    "mistral-sliding-window": (
        "MistralConfig",
        "MistralForCausalLM",
        dict(sliding_window=8, tie_word_embeddings=False),
        {"attn_implementation": "eager"},
    ),
    "llama3-sharded": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(rope_parameters=LLAMA3_ROPE, tie_word_embeddings=False),
        {"max_shard_size": "20KB"},
    ),
    "llama3-legacy-config": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(rope_parameters=LLAMA3_ROPE, tie_word_embeddings=False),
        {"legacy_config": True},
    ),
    "llama-linear-legacy-config": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(rope_parameters=LINEAR_ROPE, tie_word_embeddings=False),
        {"legacy_config": True},
    ),
}


@dataclass
class Checkpoint:
    name: str
    path: Path
    hf: Any  # the transformers model the directory was saved from (eval, float32)
    input_ids: torch.Tensor  # [BATCH, SEQ]
    hf_logits: torch.Tensor  # [BATCH, SEQ, VOCAB], transformers' full-sequence logits


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter a random value of a realistic size (transformers' init leaves norms at 1, biases at 0
    and uses std 0.02, which would make logits nearly flat and the comparison weak)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():  # tied weights are listed once
        noise = torch.randn(p.shape, generator=gen)
        if p.dim() == 1 and "norm" in name:  # RMSNorm weights, incl. Qwen3 q_norm / k_norm
            p.copy_(1.0 + 0.2 * noise)
        elif p.dim() == 1:  # biases (Qwen2 q/k/v)
            p.copy_(0.5 * noise)
        elif "embed_tokens" in name or "lm_head" in name:
            p.copy_(0.5 * noise)  # logits of a few units: clear argmax for greedy decoding
        else:
            p.copy_(noise / math.sqrt(p.shape[1]))


def to_legacy_config(path: Path) -> None:
    """Rewrite transformers-5 ``rope_parameters`` to the spelling published checkpoints use: ``rope_theta`` at the
    top level and ``rope_scaling`` with ``type``."""
    file = path / "config.json"
    raw = json.loads(file.read_text())
    params = dict(raw.pop("rope_parameters"))
    raw["rope_theta"] = params.pop("rope_theta")
    kind = params.pop("rope_type")
    raw["rope_scaling"] = {"type": kind, **params}
    file.write_text(json.dumps(raw, indent=2))


def build_checkpoint(name: str, root: Path) -> Checkpoint:
    config_cls, model_cls, kwargs, opts = CASES[name]
    config = getattr(transformers, config_cls)(**{**COMMON, **kwargs})
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)._from_config(
        config, attn_implementation=opts.get("attn_implementation", "sdpa"), dtype=torch.float32
    )
    randomize_(hf, seed=1)
    hf.eval()
    path = root / name
    save_kwargs = {"max_shard_size": opts["max_shard_size"]} if "max_shard_size" in opts else {}
    hf.save_pretrained(path, **save_kwargs)
    if opts.get("legacy_config"):
        to_legacy_config(path)
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        hf_logits = hf(input_ids).logits.float()
    return Checkpoint(name, path, hf, input_ids, hf_logits)


@pytest.fixture(scope="module")
def checkpoints() -> dict[str, Checkpoint]:
    """Every case is built at most once per module, on first use."""
    return {}


def get_checkpoint(checkpoints: dict[str, Checkpoint], tmp_path_factory, name: str) -> Checkpoint:
    if name not in checkpoints:
        checkpoints[name] = build_checkpoint(name, tmp_path_factory.mktemp("hf_ckpt"))
    return checkpoints[name]


@pytest.fixture(scope="module", params=list(CASES))
def ckpt(request, checkpoints, tmp_path_factory) -> Checkpoint:
    return get_checkpoint(checkpoints, tmp_path_factory, request.param)


def load_ours(path: Path):
    return load_model(path, dtype="float32", device="cpu", tokenizer=False)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


# --- logits -------------------------------------------------------------------------------------------------------


def test_full_sequence_logits_match(ckpt: Checkpoint):
    lm = load_ours(ckpt.path)
    with torch.no_grad():
        ours = lm.model(ckpt.input_ids)
    diff = max_diff(ours, ckpt.hf_logits)
    print(f"[{ckpt.name}] full-sequence max abs diff {diff:.3g} (logit std {float(ckpt.hf_logits.std()):.2f})")
    assert diff <= ATOL, f"{ckpt.name}: max abs diff {diff}"


def test_kv_cache_logits_match(ckpt: Checkpoint):
    """Prefill half the sequence, then feed the rest one token at a time: every step must match the reference."""
    lm = load_ours(ckpt.path)
    half = SEQ // 2
    cache = lm.model.new_cache(64, batch=BATCH)
    with torch.no_grad():
        steps = [lm.model(ckpt.input_ids[:, :half], cache=cache)]
        for i in range(half, SEQ):
            steps.append(lm.model(ckpt.input_ids[:, i : i + 1], cache=cache))
    assert cache.length == SEQ
    ours = torch.cat(steps, dim=1)
    diff = max_diff(ours, ckpt.hf_logits)
    print(f"[{ckpt.name}] KV-cache max abs diff {diff:.3g}")
    assert diff <= ATOL, f"{ckpt.name}: max abs diff {diff}"


@pytest.mark.parametrize(
    "name", ["llama3-rope", "llama-linear-rope", "qwen2-bias-tied", "qwen3-qknorm-head_dim", "mistral-sliding-window"]
)
def test_greedy_generation_matches_transformers(name, checkpoints, tmp_path_factory):
    ck = get_checkpoint(checkpoints, tmp_path_factory, name)
    lm = load_ours(ck.path)
    prompt = ck.input_ids[:1, :8]
    hf = ck.hf
    # Never stop early: no end-of-sequence token (the reference would otherwise stop when it draws one).
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            eos_token_id=None,
            pad_token_id=0,
        )
    expected = out[0, prompt.shape[1] :].tolist()
    assert len(expected) == NEW_TOKENS, "transformers stopped early"
    ours = generate(lm, prompt[0].tolist(), NEW_TOKENS, stop_at_eos=False)
    assert ours == expected


# --- the cases test what they claim to test -----------------------------------------------------------------------


def test_qwen2_case_has_nonzero_biases_and_tied_embeddings(checkpoints, tmp_path_factory):
    ck = get_checkpoint(checkpoints, tmp_path_factory, "qwen2-bias-tied")
    lm = load_ours(ck.path)
    cfg = lm.config
    assert cfg.tie_word_embeddings and cfg.qkv_bias
    attn = lm.model.model.layers[0].self_attn
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        assert proj.bias is not None and float(proj.bias.abs().min()) > 0
    assert lm.model.lm_head.weight.data_ptr() == lm.model.model.embed_tokens.weight.data_ptr()


def test_qwen3_case_has_qk_norm_and_wide_heads(checkpoints, tmp_path_factory):
    ck = get_checkpoint(checkpoints, tmp_path_factory, "qwen3-qknorm-head_dim")
    lm = load_ours(ck.path)
    assert lm.config.qk_norm and lm.config.head_dim == 32 != lm.config.hidden_size // lm.config.num_heads
    attn = lm.model.model.layers[0].self_attn
    assert float((attn.q_norm.weight - 1).abs().max()) > 0.1
    assert float((attn.k_norm.weight - 1).abs().max()) > 0.1


def test_llama3_rope_case_covers_all_three_bands(checkpoints, tmp_path_factory):
    ck = get_checkpoint(checkpoints, tmp_path_factory, "llama3-rope")
    cfg = load_ours(ck.path).config
    assert cfg.rope_scaling["rope_type"] == "llama3"
    scaled = rope_inv_freq(cfg)
    plain = rope_inv_freq(dataclasses.replace(cfg, rope_scaling={"rope_type": "default"}))
    ratio = plain / scaled
    kept = torch.isclose(ratio, torch.tensor(1.0))
    slowed = torch.isclose(ratio, torch.tensor(8.0))
    assert kept.any() and slowed.any() and (~kept & ~slowed).any(), ratio


def test_sliding_window_changes_the_reference(checkpoints, tmp_path_factory):
    """The window (8) is shorter than the sequence (24), so it must matter: without it transformers differs."""
    ck = get_checkpoint(checkpoints, tmp_path_factory, "mistral-sliding-window")
    assert load_ours(ck.path).config.sliding_window == 8
    config = ck.hf.config.__class__(**{**ck.hf.config.to_dict(), "sliding_window": None})
    full = ck.hf.__class__._from_config(config, attn_implementation="eager", dtype=torch.float32).eval()
    full.load_state_dict(ck.hf.state_dict())
    with torch.no_grad():
        logits = full(ck.input_ids).logits
    assert max_diff(logits[:, :8], ck.hf_logits[:, :8]) <= ATOL  # the first 8 tokens see everything either way
    assert max_diff(logits[:, 8:], ck.hf_logits[:, 8:]) > 1e-2


def test_sharded_case_is_sharded(checkpoints, tmp_path_factory):
    ck = get_checkpoint(checkpoints, tmp_path_factory, "llama3-sharded")
    index = json.loads((ck.path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1
    assert not (ck.path / "model.safetensors").exists()
    assert all((ck.path / s).is_file() for s in shards)


@pytest.mark.parametrize("name", ["llama3-legacy-config", "llama-linear-legacy-config"])
def test_legacy_config_is_the_published_spelling(name, checkpoints, tmp_path_factory):
    """The rewritten config has no ``rope_parameters``; transformers reads it back to the same model too."""
    ck = get_checkpoint(checkpoints, tmp_path_factory, name)
    raw = json.loads((ck.path / "config.json").read_text())
    assert "rope_parameters" not in raw and "rope_theta" in raw and "type" in raw["rope_scaling"]
    assert "rope_type" not in raw["rope_scaling"]
    ours = load_ours(ck.path).config
    assert ours.rope_scaling["rope_type"] == raw["rope_scaling"]["type"]
    assert ours.rope_theta == raw["rope_theta"]
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(ck.path, dtype=torch.float32).eval()
    with torch.no_grad():
        assert max_diff(reloaded(ck.input_ids).logits, ck.hf_logits) <= ATOL
