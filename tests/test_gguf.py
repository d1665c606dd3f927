"""GGUF files: written here with llama.cpp's own ``gguf`` writer the way its converter writes them (q/k rows
permuted, tensors in GGUF order, tokenizer as metadata) from a transformers model, then opened by ``load_model``.

A float32 file must give transformers' logits; every quantization must load as exactly what gguf dequantizes
(legacy types quantized by gguf itself, K-quants from random blocks); the tokenizer built from the metadata must
tokenize like the tokenizer.json it came from; broken files give one line.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

from explorer.errors import ExplorerError  # noqa: E402
from explorer.models.checkpoint import default_model_dirs, load_model, load_tokenizer  # noqa: E402
from explorer.models.gguf import dequantize_into, read_file  # noqa: E402

DEMO = default_model_dirs()["target"]
HEADS, KV_HEADS, HIDDEN = 4, 2, 64
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"
LEGACY = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
K_QUANTS = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to q and k rows (the rotary halves interleaved per head)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf: str) -> str:
    parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}  # fmt: skip
    if hf.startswith("model.layers."):
        _, _, layer, rest = hf.split(".", 3)
        module, kind = rest.rsplit(".", 1)
        return f"blk.{layer}.{parts[module]}.{kind}"
    return {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}[hf]  # fmt: skip


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    vocab = json.loads((DEMO / "tokenizer.json").read_text())["model"]["vocab"]
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def write_gguf(path, model, qtype=Q.F32, with_tokenizer=True, arch="llama"):
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_uint32(f"{arch}.block_count", cfg.num_hidden_layers)
    w.add_uint32(f"{arch}.context_length", cfg.max_position_embeddings)
    w.add_uint32(f"{arch}.embedding_length", cfg.hidden_size)
    w.add_uint32(f"{arch}.feed_forward_length", cfg.intermediate_size)
    w.add_uint32(f"{arch}.attention.head_count", cfg.num_attention_heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", cfg.num_key_value_heads)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    if with_tokenizer:
        tok = json.loads((DEMO / "tokenizer.json").read_text())
        vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
        merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_string("tokenizer.ggml.pre", "gpt-2")
        w.add_array("tokenizer.ggml.tokens", [t for t, _ in vocab])
        w.add_array("tokenizer.ggml.token_type", [3 if i == 0 else 1 for _, i in vocab])
        w.add_array("tokenizer.ggml.merges", merges)
        w.add_uint32("tokenizer.ggml.bos_token_id", 0)
        w.add_uint32("tokenizer.ggml.eos_token_id", 0)
        w.add_bool("tokenizer.ggml.add_bos_token", False)
        w.add_string("tokenizer.chat_template", TEMPLATE)
    for name, t in model.state_dict().items():
        a = t.float().numpy()
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            a = llama_cpp_permute(a, HEADS if "q_proj" in name else KV_HEADS)
        kind = qtype if a.ndim == 2 else Q.F32  # llama.cpp keeps norms in F32
        data = a if kind == Q.F32 else quantize(a, kind)
        w.add_tensor(gguf_name(name), data, raw_dtype=kind)  # the shape follows from the bytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_float32_file_gives_transformers_logits(tmp_path, hf_model):
    lm = load_model(write_gguf(tmp_path / "m.gguf", hf_model), dtype="float32", device="cpu")
    assert lm.config.num_kv_heads == KV_HEADS and not lm.config.tie_word_embeddings
    ids = torch.randint(0, hf_model.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf_model(ids).logits
        got = lm.model(ids)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("qtype", LEGACY, ids=lambda q: q.name)
def test_each_quantization_loads_as_gguf_dequantizes_it(tmp_path, hf_model, qtype):
    lm = load_model(write_gguf(tmp_path / "m.gguf", hf_model, qtype, with_tokenizer=False), "float32", "cpu",
                    tokenizer=False)  # fmt: skip
    ours = lm.model.state_dict()
    for name, t in hf_model.state_dict().items():
        a = t.numpy()
        if a.ndim == 2 and qtype != Q.F32:
            a = dequantize(quantize(a, qtype), qtype)  # what the file holds (no permutation: it commutes with rows)
        torch.testing.assert_close(ours[name], torch.from_numpy(a.astype(np.float32)), atol=0, rtol=0)


@pytest.mark.parametrize("qtype", K_QUANTS, ids=lambda q: q.name)
def test_k_quants_dequantize_in_chunks(tmp_path, qtype, monkeypatch):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, cols = 5, 2 * block
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 0x78, size=(rows, cols // block * size), dtype=np.uint8)  # every fp16 field finite
    w = gguf.GGUFWriter(str(tmp_path / "k.gguf"), "llama")
    w.add_tensor("blk.0.ffn_up.weight", raw, raw_dtype=qtype)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    monkeypatch.setattr("explorer.models.gguf.ROWS_PER_CHUNK", 2)  # 3 chunks: 2 + 2 + 1 rows
    _, (info,) = read_file(tmp_path / "k.gguf")
    got = dequantize_into(info, torch.float32)
    assert got.shape == (rows, cols)
    np.testing.assert_array_equal(got.numpy(), dequantize(raw, qtype))
    assert torch.isfinite(got).all()


def test_tokenizer_and_prompt_format_from_metadata(tmp_path, hf_model):
    lm = load_model(write_gguf(tmp_path / "m.gguf", hf_model, Q.Q8_0), device="cpu")
    ref = load_tokenizer(DEMO)
    for text in ["def add(a, b):\n    return a + b", "  x  =  1\t# ünïcödé 😀", "<|endoftext|>import os"]:
        assert lm.encode(text) == ref.encode(text).ids
        assert lm.decode(lm.encode(text)) == text
    assert lm.eos_token_ids == (0,) and lm.bos_token_id == 0
    assert lm.prompt_format.chat_template == TEMPLATE
    ids = lm.prompt_ids("hi", chat=True, system="be brief")
    assert lm.decode(ids) == "<|system|>be brief<|user|>hi<|assistant|>"


def test_broken_files_give_one_line(tmp_path, hf_model):
    good = write_gguf(tmp_path / "m.gguf", hf_model, Q.Q8_0).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good[: len(good) - 1000])
    with pytest.raises(ExplorerError, match="truncated GGUF file .*cut.gguf: tensor"):
        load_model(cut, device="cpu")
    head = tmp_path / "head.gguf"
    head.write_bytes(good[:200])
    with pytest.raises(ExplorerError, match="corrupt or truncated GGUF file"):
        load_model(head, device="cpu")
    other = tmp_path / "gpt.gguf"
    w = gguf.GGUFWriter(str(other), "gpt2")
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(ExplorerError, match="unsupported GGUF architecture 'gpt2'"):
        load_model(other, device="cpu")
    run = subprocess.run([sys.executable, "-m", "explorer", "generate", "--model", str(cut)], capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.startswith("explorer: error: truncated GGUF file") and run.stderr.count("\n") == 1


def test_convert_writes_a_directory_transformers_and_explorer_load(tmp_path, hf_model):
    from explorer.cli.main import main

    path = write_gguf(tmp_path / "m.gguf", hf_model, Q.Q8_0)
    out = tmp_path / "hf"
    assert main(["convert", str(path), "--out", str(out), "--to-dtype", "float32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                     "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
    from_gguf, from_dir = load_model(path, "float32", "cpu"), load_model(out, "float32", "cpu")
    ids = from_gguf.encode("def add(a, b):\n    return a + b")
    assert from_dir.encode("def add(a, b):\n    return a + b") == ids
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_dir.model(torch.tensor([ids])), from_gguf.model(torch.tensor([ids])))
        torch.testing.assert_close(ref(torch.tensor([ids])).logits, from_gguf.model(torch.tensor([ids])), atol=1e-4,
                                   rtol=1e-4)  # fmt: skip
    assert transformers.AutoTokenizer.from_pretrained(out)("def add(a, b):\n    return a + b").input_ids == ids
    assert main(["convert", str(path), "--out", str(out)]) == 2  # "--out DIR exists and is not an empty directory"
