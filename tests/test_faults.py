"""The fault suite: bad input of every kind, as a careless user gives it, ends in exit 2 and ONE stderr line that
names the problem (file, field, flag or value, and what is allowed), or in a correct result; no cancelled or failed
write loses or corrupts a file.

Cases run ``explorer.cli.main`` in process on a tiny model directory built here (2 layers, vocab 128, context 128,
a byte-level BPE tokenizer); only what needs a real process (signals, a closed pipe, the terminal's encoding) runs
``python -m explorer``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from explorer.cli.main import main
from explorer.models.decoder import CausalLM, ModelConfig

REPO = Path(__file__).resolve().parent.parent
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "eos_token_id": 0,
}
PROMPT = "def f(x): return x"


def build_model_dir(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(CONFIG))
    torch.manual_seed(0)
    model = CausalLM(ModelConfig.from_hf(CONFIG))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "inv_freq" not in k}
    save_file(state, str(d / "model.safetensors"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = ["hello world", "the quick brown fox jumps over the lazy dog", "def f(x): return x"] * 10
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=100, special_tokens=["<eos>"], show_progress=False))
    tok.save(str(d / "tokenizer.json"))
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("faults") / "tiny")


@pytest.fixture
def copy(model_dir, tmp_path) -> Path:
    """A fresh copy of the tiny model directory to break."""
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("EXPLORER_SKIP_WEIGHT_CHECK", raising=False)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit 2, exactly one stderr line ``explorer: error: ...`` holding every fragment, stopped by a check that
    names the problem (not by the catch-all)."""
    code, out, err = result
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("explorer: error: "), line
    assert "rerun with --debug" not in line, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def generate(capsys, model: Path, *extra) -> tuple[int, str, str]:
    return cli(capsys, "generate", "--model", model, "--prompt", PROMPT, "--max-new-tokens", 2, "--json", *extra)


def edit_config(d: Path, **changes) -> None:
    raw = json.loads((d / "config.json").read_text())
    for key, value in changes.items():
        if value is DELETE:
            raw.pop(key, None)
        else:
            raw[key] = value
    (d / "config.json").write_text(json.dumps(raw))


DELETE = object()

# ---------------------------------------------------------------------------------------------- config.json
BAD_CONFIG = [
    ("rms_norm_eps", "tiny", "rms_norm_eps must be a finite number"),
    ("rms_norm_eps", 0, "rms_norm_eps"),
    ("rms_norm_eps", -1e-5, "rms_norm_eps"),
    ("rms_norm_eps", [1e-5], "rms_norm_eps"),
    ("rms_norm_eps", True, "rms_norm_eps"),
    ("rms_norm_eps", math.nan, "rms_norm_eps"),
    ("max_position_embeddings", "x", "max_position_embeddings must be an integer"),
    ("max_position_embeddings", 0, "max_position_embeddings"),
    ("max_position_embeddings", -5, "max_position_embeddings"),
    ("max_position_embeddings", 1.5, "max_position_embeddings"),
    ("max_position_embeddings", True, "max_position_embeddings"),
    ("hidden_size", -32, "hidden_size must be an integer >= 1 (got -32)"),
    ("hidden_size", 0, "hidden_size"),
    ("hidden_size", "32", 'hidden_size must be an integer >= 1 (got "32")'),
    ("hidden_size", 32.5, "hidden_size"),
    ("hidden_size", DELETE, "config.json has no hidden_size"),
    ("num_attention_heads", 0, "num_attention_heads must be an integer >= 1 (got 0)"),
    ("num_attention_heads", -4, "num_attention_heads"),
    ("num_attention_heads", "four", "num_attention_heads"),
    ("num_attention_heads", 3, "must be a multiple of num_key_value_heads"),
    ("num_attention_heads", None, "num_attention_heads"),
    ("num_key_value_heads", 3, "num_attention_heads (4) must be a multiple of num_key_value_heads (3)"),
    ("num_key_value_heads", 8, "multiple of num_key_value_heads (8)"),
    ("num_key_value_heads", 0, "num_key_value_heads"),
    ("num_key_value_heads", "2", "num_key_value_heads"),
    ("num_key_value_heads", None, "has shape"),  # null: as many as the heads, and the weights say otherwise
    ("head_dim", 7, "head_dim must be even"),
    ("head_dim", 0, "head_dim"),
    ("head_dim", -8, "head_dim"),
    ("head_dim", "8", "head_dim"),
    ("head_dim", 4096, "head_dim"),
    ("head_dim", 16, "has shape"),
    ("intermediate_size", 0, "intermediate_size"),
    ("intermediate_size", "64", "intermediate_size"),
    ("num_hidden_layers", 0, "num_hidden_layers"),
    ("num_hidden_layers", -1, "num_hidden_layers"),
    ("num_hidden_layers", 10**6, "num_hidden_layers must be an integer in 1..10000"),
    ("num_hidden_layers", 3, "weights missing"),
    ("vocab_size", 0, "vocab_size"),
    ("vocab_size", "128", "vocab_size"),
    ("vocab_size", 64, "tokenizer.json"),
    ("rope_theta", 0, "rope_theta must be a finite number above 0"),
    ("rope_theta", -1, "rope_theta"),
    ("rope_theta", "big", "rope_theta"),
    ("rope_theta", math.inf, "rope_theta"),
    ("rope_theta", math.nan, "rope_theta"),
    ("rope_scaling", {"rope_type": "linear"}, "rope_scaling has no factor"),
    ("rope_scaling", {"rope_type": "linear", "factor": 0}, "factor must be a finite number above 0"),
    ("rope_scaling", {"rope_type": "linear", "factor": "2"}, "factor"),
    ("rope_scaling", {"type": "linear"}, "factor"),
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64}, "has no low_freq_factor"),  # fmt: skip
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
                      "original_max_position_embeddings": 64}, "high_freq_factor (1) must be above"),  # fmt: skip
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
     "original_max_position_embeddings"),  # fmt: skip
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": "x"}, "original_max_position_embeddings"),  # fmt: skip
    ("rope_scaling", "linear", "rope_scaling must be an object"),
    ("rope_scaling", {"type": "yarn", "factor": 4.0}, "unsupported rope type 'yarn'"),
    ("rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, "unsupported rope type 'dynamic'"),
    ("rope_parameters", "x", "rope_parameters must be an object"),
    ("rope_parameters", {"rope_type": "linear", "rope_theta": 10000.0}, "rope_parameters has no factor"),
    ("rope_parameters", {"rope_type": "default", "rope_theta": 0}, "rope_theta"),
    ("sliding_window", -1, "sliding_window must be an integer >= 1 (got -1)"),
    ("sliding_window", 0, "sliding_window"),
    ("sliding_window", "x", "sliding_window"),
    ("tie_word_embeddings", "false", "tie_word_embeddings must be true or false"),
    ("mlp_bias", "yes", "mlp_bias"),
    ("attention_bias", 1, "attention_bias"),
    ("model_type", "gpt2", "unsupported architecture 'gpt2'"),
    ("model_type", DELETE, "unsupported architecture None"),
    ("hidden_act", "gelu", "unsupported activation 'gelu'"),
]


@pytest.mark.parametrize(
    "key,value,fragment", BAD_CONFIG, ids=[f"{k}={json.dumps(v) if v is not DELETE else 'deleted'}"
                                           for k, v, _ in BAD_CONFIG]  # fmt: skip
)
def test_bad_config_value(capsys, copy, key, value, fragment):
    edit_config(copy, **{key: value})
    assert_error(generate(capsys, copy), fragment)


GOOD_CONFIG = [
    ("rms_norm_eps", None),
    ("sliding_window", None),
    ("sliding_window", 4096),
    ("rope_scaling", None),
    ("max_position_embeddings", 128.0),
    ("head_dim", None),
    ("head_dim", 8),
    ("rope_scaling", {"rope_type": "linear", "factor": 2.0}),
    ("rope_scaling", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64}),  # fmt: skip
    ("rope_parameters", {"rope_type": "default", "rope_theta": 500000.0}),
]


@pytest.mark.parametrize("key,value", GOOD_CONFIG, ids=[f"{k}={json.dumps(v)}" for k, v in GOOD_CONFIG])
def test_unusual_but_valid_config_runs(capsys, copy, key, value):
    edit_config(copy, **{key: value})
    code, out, err = generate(capsys, copy)
    assert code == 0, err
    assert len(json.loads(out)["token_ids"]) == 2


# ---------------------------------------------------------------------------------------------- weights
def edit_weights(d: Path, fn) -> None:
    state = load_file(str(d / "model.safetensors"))
    fn(state)
    save_file(state, str(d / "model.safetensors"))


Q = "model.layers.0.self_attn.q_proj.weight"


def _set(name, value):
    return lambda s: s.__setitem__(name, value(s[name]))


def _poison(name, index, value):
    def fn(s):
        t = s[name].clone()
        t.view(-1)[index] = value
        s[name] = t

    return fn


BAD_WEIGHTS = [
    ("int8", _set(Q, lambda t: t.to(torch.int8)), [Q, "dtype int8", "floating-point"]),
    ("bool", _set(Q, lambda t: t > 0), [Q, "dtype bool"]),
    ("int64-embed", _set("model.embed_tokens.weight", lambda t: t.to(torch.int64)), ["embed_tokens", "int64"]),
    ("nan-q", _poison(Q, 5, math.nan), [Q, "NaN"]),
    ("inf-embed", _poison("model.embed_tokens.weight", 0, math.inf), ["model.embed_tokens.weight", "Inf"]),
    ("-inf-head", _poison("lm_head.weight", 77, -math.inf), ["lm_head.weight", "Inf"]),
    ("nan-norm", _poison("model.norm.weight", 3, math.nan), ["model.norm.weight", "NaN"]),
    ("nan-mlp-last-layer", _poison("model.layers.1.mlp.down_proj.weight", 100, math.nan),
     ["model.layers.1.mlp.down_proj.weight"]),  # fmt: skip
    ("wrong-shape", _set(Q, lambda t: t[:-1]), [Q, "has shape"]),
    ("missing", lambda s: s.pop(Q), ["weights missing", Q]),
    ("unexpected", lambda s: s.__setitem__("extra.weight", torch.zeros(2)), ["unexpected weights", "extra.weight"]),
]


@pytest.mark.parametrize("name,fn,fragments", BAD_WEIGHTS, ids=[c[0] for c in BAD_WEIGHTS])
def test_bad_weights(capsys, copy, name, fn, fragments):
    edit_weights(copy, fn)
    assert_error(generate(capsys, copy), *fragments)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_load(capsys, copy, dtype):
    edit_weights(copy, lambda s: s.update({k: v.to(dtype) for k, v in s.items()}))
    code, out, err = generate(capsys, copy)
    assert code == 0, err
    assert json.loads(out)["dtype"] == "float32"


def test_nonfinite_logits_refused_when_the_weight_check_is_skipped(capsys, copy, monkeypatch):
    edit_weights(copy, _poison("model.norm.weight", 0, math.nan))
    monkeypatch.setenv("EXPLORER_SKIP_WEIGHT_CHECK", "1")
    assert_error(generate(capsys, copy), "NaN logits at new token 0")


def shard(d: Path, names: dict[str, str]) -> None:
    """Split the weights into two shards and write an index whose weight_map says ``names`` for the first."""
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    keys = sorted(state)
    half = len(keys) // 2
    save_file({k: state[k] for k in keys[:half]}, str(d / "model-00001.safetensors"))
    save_file({k: state[k] for k in keys[half:]}, str(d / "model-00002.safetensors"))
    first = names.get("first", "model-00001.safetensors")
    weight_map = {k: first for k in keys[:half]} | {k: "model-00002.safetensors" for k in keys[half:]}
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize(
    "first,fragment",
    [
        ("../model-00001.safetensors", "outside the model directory"),
        ("/etc/hostname", "outside the model directory"),
        ("sub/../../x.safetensors", "outside the model directory"),
        (5, "weight_map values must be shard file names"),
        ("", "weight_map values must be shard file names"),
        ("model-00003.safetensors", "shard model-00003.safetensors"),
    ],
)
def test_shard_paths_stay_inside_the_model_directory(capsys, copy, first, fragment):
    shard(copy, {"first": first})
    assert_error(generate(capsys, copy), fragment)


def test_sharded_checkpoint_loads(capsys, copy):
    shard(copy, {})
    code, out, err = generate(capsys, copy)
    assert code == 0, err


def test_tokenizer_larger_than_the_embedding(capsys, copy):
    tok = json.loads((copy / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab.update({f"extra{i}": len(vocab) + i for i in range(60)})  # ids 81..140; the embedding has 128 rows
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    assert_error(generate(capsys, copy), "token ids up to 140", "vocab_size is 128")


# ---------------------------------------------------------------------------------------------- numbers
GENERATE_FLAGS = [
    (["--temperature", "nan"], "--temperature must be a finite number in 0..5 (got nan)"),
    (["--temperature", "inf"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "abc"], "--temperature"),
    (["--temperature", "6"], "--temperature"),
    (["--top-k", "-1"], "--top-k must be an integer in 0..1000 (got -1)"),
    (["--top-k", "1.5"], "--top-k"),
    (["--top-k", "x"], "--top-k"),
    (["--top-k", "100000"], "--top-k"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be an integer in 1..4096 (got 0)"),
    (["--max-new-tokens", "-5"], "--max-new-tokens"),
    (["--max-new-tokens", "1e9"], "--max-new-tokens"),
    (["--max-new-tokens", "x"], "--max-new-tokens"),
    (["--max-new-tokens", "5000"], "--max-new-tokens"),
    (["--max-new-tokens", "125"], "ask for at most"),
    (["--seed", "-1"], "--seed must be an integer in 0.."),
    (["--seed", str(2**64)], "--seed"),
    (["--seed", "x"], "--seed"),
    (["--seed", "1.5"], "--seed"),
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N (got 'tpu')"),
    (["--device", "meta"], "--device must be cpu, cuda or cuda:N (got 'meta')"),
    (["--device", "cuda:x"], "--device"),
    (["--device", ""], "--device"),
    (["--dtype", "int8"], "--dtype: invalid choice"),
    (["--attention", "flash"], "--attention: invalid choice"),
    (["--prompt", "a\udcffb"], "--prompt is not valid UTF-8 text"),
    (["--prompt", ""], "the prompt is empty"),
    (["--prompt", "hello world " * 60], "longer than"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("flags,fragment", GENERATE_FLAGS, ids=[" ".join(f)[:40] for f, _ in GENERATE_FLAGS])
def test_generate_flags(capsys, model_dir, flags, fragment):
    assert_error(generate(capsys, model_dir, *flags), fragment)


def test_cuda_without_cuda(capsys, model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_error(generate(capsys, model_dir, "--device", "cuda"), "CUDA")


def test_model_before_the_subcommand_is_used(capsys, model_dir):
    code, out, err = cli(capsys, "--model", model_dir, "generate", "--max-new-tokens", 1, "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == str(model_dir)


SPECULATE_FLAGS = [
    (["--gamma", "-1"], "--gamma must be an integer in 0..16 (got -1)"),
    (["--gamma", "17"], "--gamma"),
    (["--gamma", "x"], "--gamma"),
    (["--tree-depth", "-1"], "--tree-depth must be an integer in 0..12 (got -1)"),
    (["--tree-depth", "13"], "--tree-depth"),
    (["--tree-topk", "-1"], "--tree-topk"),
    (["--tree-budget", "-1"], "--tree-budget"),
    (["--tree-budget", "65"], "--tree-budget"),
    (["--accept", "maybe"], "--accept"),
    (["--method", "magic"], "--method"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "-0.5"], "--temperature"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--max-new-tokens", "513"], "--max-new-tokens"),
    (["--seed", str(2**70)], "--seed"),
    (["--top-k", "-3"], "--top-k"),
    (["--device", "tpu"], "--device"),
    (["--prompt", "\udc80"], "--prompt is not valid UTF-8"),
]


@pytest.mark.parametrize("flags,fragment", SPECULATE_FLAGS, ids=[" ".join(f)[:40] for f in [c[0] for c in
                                                                                              SPECULATE_FLAGS]])
def test_speculate_flags(capsys, model_dir, flags, fragment):
    assert_error(
        cli(capsys, "speculate", "--target", model_dir, "--draft", model_dir, "--prompt", PROMPT, *flags), fragment
    )


@pytest.mark.parametrize(
    "content,fragment",
    [(b"\xff\xfe bad bytes\n", "not UTF-8"), (b"", "no prompts"), (None, "")],
    ids=["not-utf8", "empty", "missing"],
)
def test_speculate_prompts_file(capsys, model_dir, tmp_path, content, fragment):
    f = tmp_path / "prompts.txt"
    if content is not None:
        f.write_bytes(content)
    line = assert_error(cli(capsys, "speculate", "--target", model_dir, "--draft", model_dir, "--prompts", f))
    assert fragment in line and str(f) in line


def test_speculate_runs(capsys, model_dir):
    code, out, err = cli(capsys, "speculate", "--target", model_dir, "--draft", model_dir, "--prompt", PROMPT,
                         "--max-new-tokens", 4, "--json")  # fmt: skip
    assert code == 0, err


AMP_FLAGS = [
    (["--init-scale", "1e300"], "--init-scale must be a finite number above 0 and at most 2^64 (got 1e+300)"),
    (["--init-scale", "0"], "--init-scale"),
    (["--init-scale", "-1"], "--init-scale"),
    (["--init-scale", "nan"], "--init-scale"),
    (["--init-scale", "x"], "--init-scale"),
    (["--init-scale-log2", "65"], "--init-scale-log2"),
    (["--init-scale-log2", "-1"], "--init-scale-log2"),
    (["--init-scale", "8", "--init-scale-log2", "3"], "not both"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "11"], "--lr"),
    (["--growth-factor", "nan"], "--growth-factor"),
    (["--growth-factor", "0.5"], "--growth-factor"),
    (["--backoff", "0"], "--backoff"),
    (["--backoff", "1"], "--backoff"),
    (["--backoff", "nan"], "--backoff"),
    (["--min-scale", "-1"], "--min-scale"),
    (["--min-scale", "0"], "--min-scale"),
    (["--hysteresis", "0"], "--hysteresis"),
    (["--steps", "0"], "--steps"),
    (["--steps", "2001"], "--steps"),
    (["--steps", "3", "--spike", "99:10"], "spike at step 99 would never happen"),
    (["--steps", "3", "--spike-step", "5"], "spike at step 5 would never happen"),
    (["--spike", "x"], "--spike must be STEP:FACTOR"),
    (["--spike", "1:0.5"], "--spike-factor"),
    (["--spike", "1:nan"], "--spike-factor"),
    (["--seq-len", "1000"], "--seq-len must be at most model's context of 128 tokens"),
    (["--seq-len", "1"], "--seq-len"),
    (["--batch", "0"], "--batch"),
    (["--policy", "fp8"], "--policy"),
    (["--dtype", "float32"], "--dtype"),
    (["--seed", "-1"], "--seed"),
    (["--device", "meta"], "--device"),
    (["--text", "/no/such/file.txt"], "text file not found"),
]


@pytest.mark.parametrize("flags,fragment", AMP_FLAGS, ids=[" ".join(f)[:40] for f in [c[0] for c in AMP_FLAGS]])
def test_amp_flags(capsys, copy, flags, fragment):
    assert_error(cli(capsys, "amp", "--model", copy, "--steps", 3, *flags), fragment)


def test_amp_text_not_utf8(capsys, model_dir, tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"ok \xff\xfe not utf-8")
    assert_error(cli(capsys, "amp", "--model", model_dir, "--text", f), "cannot read text file", str(f))


ATTENTION_FLAGS = [
    (["--layer", "99"], "layer 99 is out of range"),
    (["--layer", "-1"], "--layer"),
    (["--layer", "0", "--head", "99"], "head 99 is out of range"),
    (["--block-m", "17"], "--block-m must be a power of two"),
    (["--block-m", "8"], "--block-m"),
    (["--block-n", "512"], "--block-n"),
    (["--length", "-1"], "--length"),
    (["--length", "2000"], "--length"),
    (["--backend", "cuda"], "--backend"),
    (["--dtype", "int8"], "--dtype"),
]


@pytest.mark.parametrize("flags,fragment", ATTENTION_FLAGS, ids=[" ".join(f) for f, _ in ATTENTION_FLAGS])
def test_attention_flags(capsys, model_dir, tmp_path, flags, fragment):
    argv = ["attention", "--model", model_dir, "--prompt", PROMPT, "--out", tmp_path / "t.safetensors", *flags]
    assert_error(cli(capsys, *argv), fragment)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "out,fragment", [("/proc/t.safetensors", "/proc"), ("{tmp}", "is a directory"), ("{tmp}/no/t.st", "does not exist")]
)
def test_attention_out_checked_before_work(capsys, model_dir, tmp_path, out, fragment):
    out = out.format(tmp=tmp_path)
    assert_error(cli(capsys, "attention", "--model", model_dir, "--out", out), fragment)


def test_attention_trace_replaces_the_old_file_atomically(capsys, model_dir, tmp_path):
    out = tmp_path / "t.safetensors"
    out.write_bytes(b"old")
    code, _, err = cli(capsys, "attention", "--model", model_dir, "--prompt", PROMPT, "--layer", 0, "--head", 0,
                       "--backend", "torch", "--block-m", 16, "--block-n", 16, "--out", out, "--json")  # fmt: skip
    assert code == 0, err
    assert out.read_bytes()[:8] != b"old" and [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


# ---------------------------------------------------------------------------------------------- outputs
SCREENSHOT_FLAGS = [
    (["--view", "nope"], "unknown view 'nope'"),
    (["--size", "100x100"], "outside 320x240"),
    (["--size", "abc"], "size must look like"),
    (["--size", "8000x8000"], "outside"),
    (["--out", "{tmp}/x.jpg"], "--out {tmp}/x.jpg must end in .png (got '.jpg')"),
    (["--out", "{tmp}/x"], "must end in .png"),
    (["--out", "/proc/x.png"], "/proc"),
    (["--out", "{tmp}/missing/deeper/x.png"], "does not exist"),
    (["--step", "0"], "--step must be an integer >= 1"),
    (["--step", "x"], "--step: invalid int value"),
    (["--set", "nope=1"], "nope"),
    (["--set", "max_new=0"], "max_new must be an integer in 1..4096 (got 0)"),
    (["--set", "temperature=nan"], "temperature"),
    (["--set", "novalue"], "--set takes KEY=VALUE"),
]


@pytest.mark.parametrize("flags,fragment", SCREENSHOT_FLAGS, ids=[" ".join(f) for f, _ in SCREENSHOT_FLAGS])
def test_screenshot_flags_before_work(capsys, model_dir, tmp_path, flags, fragment):
    flags = [f.format(tmp=tmp_path) for f in flags]
    argv = ["screenshot", "--view", "generate", "--model", model_dir, "--out", tmp_path / "s.png", *flags]
    assert_error(cli(capsys, *argv), fragment.format(tmp=tmp_path))
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def screenshot_shots(model_dir, tmp_path_factory):
    """Three screenshots of one tiny run: 640x360, 320x240 (laid out larger and scaled) and a bad --step."""
    from explorer.errors import ExplorerError
    from explorer.ui.app import make_session, screenshot

    out = tmp_path_factory.mktemp("shots")
    session = make_session(str(model_dir), None, PROMPT, "cpu", None)
    made = {}
    for size in ((640, 360), (320, 240)):
        made[size] = screenshot(session, "generate", out / f"{size[0]}.png", size, settings={"max_new": 3})
    try:
        screenshot(session, "generate", out / "step.png", (640, 360), step=9998, settings={"max_new": 3})
        made["step"] = None
    except ExplorerError as exc:
        made["step"] = str(exc)
    made["dir"] = out
    return made


@pytest.mark.parametrize("size", [(640, 360), (320, 240)], ids=["640x360", "320x240"])
def test_small_screenshots_work(screenshot_shots, size):
    from PIL import Image

    with Image.open(screenshot_shots[size]) as im:
        assert im.size == size and im.format == "PNG"


def test_screenshot_step_beyond_the_steps_is_refused(screenshot_shots):
    assert screenshot_shots["step"] == "--step 9999 is outside the generate view's steps (3 computed: 1..3)"
    assert not (screenshot_shots["dir"] / "step.png").exists()


RECORD_FLAGS = [
    (["--out", "{tmp}/x.avi"], "give FILE.mp4, FILE.gif or a directory"),
    (["--out", "{tmp}/x.jpg"], "not .jpg"),
    (["--out", "/proc/x.mp4"], "/proc"),
    (["--out", "/proc/frames"], "/proc"),
    (["--out", "{tmp}/no/such/x.mp4"], "does not exist"),
    (["--fps", "0"], "fps must be above 0"),
    (["--fps", "nan"], "fps"),
    (["--fps", "121"], "fps"),
    (["--fps", "-1"], "fps"),
    (["--fps", "x"], "--fps: invalid float value"),
    (["--size", "321x240"], "must be even"),
    (["--size", "100x100"], "outside"),
    (["--size", "huge"], "size must look like"),
    (["--seconds-per-step", "nan"], "--seconds-per-step"),
    (["--seconds-per-step", "0"], "--seconds-per-step"),
    (["--seconds-per-step", "601"], "--seconds-per-step"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--seed", "-1"], "--seed must be an integer in 0.."),
    (["--seed", str(2**64)], "--seed"),
    (["--set", "gamma=-1"], "gamma"),
    (["--set", "bogus=1"], "bogus"),
]


@pytest.mark.parametrize("flags,fragment", RECORD_FLAGS, ids=[" ".join(f) for f, _ in RECORD_FLAGS])
def test_record_flags_before_work(capsys, model_dir, tmp_path, flags, fragment):
    flags = [f.format(tmp=tmp_path) for f in flags]
    argv = ["record", "--view", "speculative", "--model", model_dir, "--out", tmp_path / "v.mp4", *flags]
    assert_error(cli(capsys, *argv), fragment.format(tmp=tmp_path))
    assert not list(tmp_path.iterdir())


TOURS = [
    ("scene = []", "no scenes"),
    ('title = "x"', "no scenes"),
    ('[[scene]]\ncard = "A"\nseconds = nan', "seconds must be above 0"),
    ('[[scene]]\ncard = "A"\nseconds = inf', "seconds"),
    ('[[scene]]\ncard = "A"\nseconds = -1', "seconds"),
    ('[[scene]]\nview = "generate"\nhold = nan', "hold must be at least 0"),
    ('[[scene]]\nview = "generate"\nseconds_per_step = nan', "seconds_per_step"),
    ('[[scene]]\nview = "generate"\n[[scene.at]]\nstep = 1\npause = nan', "pause"),
    ('fps = nan\n[[scene]]\ncard = "A"', "fps must be above 0"),
    ('seed = -1\n[[scene]]\ncard = "A"', "seed must be an integer in 0.."),
    (f'seed = {2**62}\n[[scene]]\ncard = "A"', "seed"),
    ('size = "321x241"\n[[scene]]\ncard = "A"', "even"),
    ('[[scene]]\nview = "nope"', "nope"),
    ('[[scene]]\nview = "generate"\nsteps = [3, 1]', "first <= last"),
    ('[[scene]]\nview = "generate"\nsteps = 0', "steps must be at least 1"),
    ('[[scene]]\nview = "generate"\nsettings = { max_new = 0 }', "max_new"),
    ('[[scene]]\nview = "generate"\nsettings = { temperature = nan }', "temperature"),
    ('[[scene]]\ncard = "A"\nsecnds = 2', "did you mean seconds"),
    ("[[scene]\n", "line 1"),
    ('[[scene]]\nview = "generate"\ntarget = "no/such/model"', "model directory not found"),
]


@pytest.mark.parametrize("text,fragment", TOURS, ids=[t.replace("\n", " ")[:40] for t, _ in TOURS])
def test_bad_tours(capsys, tmp_path, text, fragment):
    tour = tmp_path / "tour.toml"
    tour.write_text(text)
    assert_error(cli(capsys, "record", tour, "--out", tmp_path / "t.mp4"), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tour.toml"]


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["record", "--out", "x.mp4"], "give a TOUR file"),
        (["record", "t.toml", "--view", "generate", "--out", "x.mp4"], "not both"),
        (["record", "/no/such/tour.toml", "--out", "{tmp}/x.mp4"], "tour"),
        (["train-demo", "--batch", "0"], "--batch must be an integer in 1..4096 (got 0)"),
        (["train-demo", "--seq-len", "8"], "--seq-len"),
        (["train-demo", "--seq-len", "1000"], "--seq-len must be an integer in 16..512"),
        (["train-demo", "--target-steps", "0"], "--target-steps"),
        (["train-demo", "--out", "/proc/models"], "/proc"),
        (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    ],
)
def test_other_commands(capsys, tmp_path, argv, fragment):
    t0 = time.perf_counter()
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert_error(cli(capsys, *argv), fragment)
    assert time.perf_counter() - t0 < 10  # refused before any work (train-demo trains for 40 minutes)


# ---------------------------------------------------------------------------------------------- memory
def test_memory_refused_with_the_figure(capsys, model_dir, monkeypatch):
    import explorer.memory

    monkeypatch.setattr(explorer.memory, "available_bytes", lambda device="cpu": 50_000)
    line = assert_error(generate(capsys, model_dir), "weights in float32 needs", "GiB", "GiB free")
    assert "0.00 GiB" in line


def test_kv_cache_memory_refused(capsys, model_dir, monkeypatch):
    import explorer.memory
    import explorer.models.generate

    monkeypatch.setattr(explorer.models.generate, "check_fits", lambda need, what, device, hint: (_ for _ in ()).throw(
        explorer.errors.ExplorerError(f"{what} needs {explorer.memory.gib(need)}")))  # fmt: skip
    assert_error(generate(capsys, model_dir), "a KV cache of 9 tokens for tiny needs")


def test_training_memory_refused(capsys, model_dir, monkeypatch):
    import explorer.amp.engine

    monkeypatch.setattr(explorer.amp.engine, "training_memory", lambda *a, **k: 10**15)
    assert_error(cli(capsys, "amp", "--model", model_dir, "--steps", 2), "training with batch 2 x 32 tokens needs")


def test_memory_figures():
    from explorer.memory import kv_cache_bytes

    assert kv_cache_bytes(32, 8, 128, 8192, 2) == 2**30  # Llama-3-8B, 8K tokens in bf16: 1 GiB


# ---------------------------------------------------------------------------------------------- last resort
def test_unexpected_error_is_one_line_and_debug_shows_it(capsys, model_dir, monkeypatch):
    import explorer.models.generate

    def boom(*a, **k):
        raise RuntimeError("something\nnobody expected")

    monkeypatch.setattr(explorer.models.generate, "iter_generate", boom)
    code, out, err = generate(capsys, model_dir)
    assert code == 2 and err.strip() == (
        "explorer: error: unexpected RuntimeError: something nobody expected (rerun with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="nobody expected"):
        main(["--debug", "generate", "--model", str(model_dir), "--max-new-tokens", "1"])


# ---------------------------------------------------------------------------------------------- processes
def run_explorer(*argv, env=None, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **(env or {}))
    return subprocess.run([sys.executable, "-m", "explorer", *map(str, argv)], cwd=REPO, capture_output=True,
                          env=env, timeout=120, **kw)  # fmt: skip


def test_ascii_terminal_gets_escaped_text(capsys, model_dir, monkeypatch):
    import io

    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))  # PYTHONIOENCODING=ascii
    code = main(["generate", "--model", str(model_dir), "--prompt", "héllo ∑", "--max-new-tokens", "2"])
    sys.stdout.flush()
    assert code == 0, capsys.readouterr().err
    assert raw.getvalue().startswith(b"h\\xe9llo \\u2211")


def test_closed_pipe_is_quiet(model_dir):
    cmd = (f"{sys.executable} -m explorer generate --model {model_dir} --max-new-tokens 16 --json | head -c 10; "
           "exit ${PIPESTATUS[0]}")  # fmt: skip
    p = subprocess.run(["bash", "-c", cmd], cwd=REPO, capture_output=True, timeout=120,
                       env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))  # fmt: skip
    assert p.stdout == b'{"model": '
    assert p.stderr == b"", p.stderr
    assert p.returncode in (0, 141)


def previous_output(folder: Path, suffix: str) -> tuple[Path, dict[str, bytes]]:
    """An earlier recording at ``folder/previous{suffix}`` (a file, or a frames directory with a file of the
    user's) and its bytes."""
    out = folder / f"previous{suffix}"
    if suffix:
        out.write_bytes(b"the previous video")
    else:
        out.mkdir()
        (out / "frame_00000.png").write_bytes(b"old frame")
        (out / "notes.txt").write_text("mine")
    return out, snapshot(out)


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in ([out] if out.is_file() else sorted(out.iterdir()))}


def record_argv(model_dir: Path, out: Path) -> list[str]:
    """A long recording (2 steps x 60 s at 30 fps) of a tiny run: the signal always comes while it writes."""
    return ["record", "--view", "generate", "--model", str(model_dir), "--set", "max_new=2", "--seconds-per-step",
            "60", "--fps", "30", "--size", "320x240", "--out", str(out), "--quiet"]  # fmt: skip


def signal_when_writing(folder: Path, sig: int, pid: int, deadline_s: float = 100.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not any(_has_frames(p) for p in folder.iterdir() if ".partial-" in p.name):  # frames are being written
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
    os.kill(pid, sig)


def _has_frames(partial: Path) -> bool:
    """The temporary output holds at least one frame (a PNG in a frames directory, bytes in a video file). A fixed
    delay instead raced the whole recording on a fast machine: the signal then came during the commit."""
    try:
        return any(partial.iterdir()) if partial.is_dir() else partial.stat().st_size > 0
    except OSError:
        return False  # renamed or removed in between


@pytest.mark.parametrize("sig,suffix", [(signal.SIGINT, ".mp4"), (signal.SIGTERM, "")], ids=["int-mp4", "term-png"])
def test_signal_while_recording_keeps_the_old_output(capsys, model_dir, tmp_path, sig, suffix):
    """SIGINT / SIGTERM (sent to this process while ``explorer record`` runs in it) while the recording overwrites
    an earlier one: the old output is byte for byte as it was, and no partial file is left."""
    import threading

    out, before = previous_output(tmp_path, suffix)
    sender = threading.Thread(target=signal_when_writing, args=(tmp_path, sig, os.getpid()), daemon=True)
    sender.start()
    code, _, err = cli(capsys, *record_argv(model_dir, out))
    sender.join()
    assert code == (143 if sig == signal.SIGTERM else 130), err
    assert "Traceback" not in err and "Error" not in err, err
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_sigterm_during_the_commit_leaves_the_new_frames_whole(capsys, model_dir, tmp_path, monkeypatch):
    """A signal while a frames directory is being moved over the old one (one rename per frame) waits until the
    move is done: the directory then holds the whole new recording, never a mix of old and new frames."""
    from explorer import atomic

    out, _ = previous_output(tmp_path, "")
    commit = atomic.AtomicDir.commit

    def commit_while_signalled(self):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives as the first frame is moved
        return commit(self)

    monkeypatch.setattr(atomic.AtomicDir, "commit", commit_while_signalled)
    argv = [a if a != "60" else "1" for a in record_argv(model_dir, out)]  # 2 steps x 1 s at 30 fps
    code, _, err = cli(capsys, *argv)
    assert code == 143, err
    frames = sorted(p.name for p in out.iterdir() if p.name.startswith("frame_"))
    assert frames == [f"frame_{i:05d}.png" for i in range(60)]
    assert (out / "frame_00000.png").read_bytes() != b"old frame" and (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial directory left


def test_sigterm_to_a_recording_process_keeps_the_old_video(model_dir, tmp_path):
    """The same from outside: `kill PID` while `python -m explorer record` overwrites an MP4."""
    out, before = previous_output(tmp_path, ".mp4")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-m", "explorer", *record_argv(model_dir, out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        signal_when_writing(tmp_path, signal.SIGTERM, proc.pid)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert b"Traceback" not in err and b"Error" not in err, err
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_recording_over_a_file_replaces_it_whole(capsys, model_dir, tmp_path):
    out = tmp_path / "v.gif"
    out.write_bytes(b"old")
    code, _, err = cli(capsys, "record", "--view", "generate", "--model", model_dir, "--set", "max_new=2",
                       "--size", "320x240", "--fps", 2, "--out", out, "--quiet")  # fmt: skip
    assert code == 0, err
    assert out.read_bytes()[:6] == b"GIF89a"
    assert [p.name for p in tmp_path.iterdir()] == ["v.gif"]


# ---------------------------------------------------------------------------------------------- atomic writes
def _disk_full(*a, **k):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["fsync", "write"])
def test_full_disk_keeps_the_old_file(tmp_path, monkeypatch, where):
    import builtins

    from explorer.atomic import write_text_atomic
    from explorer.errors import ExplorerError

    target = tmp_path / "run.json"
    target.write_text("old")
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", _disk_full)
    else:
        real_open = builtins.open

        def full_open(file, mode="r", *a, **k):
            f = real_open(file, mode, *a, **k)
            if ".partial-" in str(file) and "w" in mode:
                f.write = _disk_full
            return f

        monkeypatch.setattr(builtins, "open", full_open)
    with pytest.raises(ExplorerError, match="cannot write .*run.json: no space left on device"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_full_disk_while_recording_keeps_the_old_video(capsys, model_dir, tmp_path, monkeypatch):
    from explorer.recording import video

    out = tmp_path / "v.gif"
    out.write_bytes(b"old video")
    monkeypatch.setattr(video.GifWriter, "_write", _disk_full)
    line = assert_error(cli(capsys, "record", "--view", "generate", "--model", model_dir, "--set", "max_new=1",
                            "--size", "320x240", "--fps", 1, "--out", out, "--quiet"))  # fmt: skip
    assert "no space left on device" in line and str(out) in line
    assert out.read_bytes() == b"old video" and [p.name for p in tmp_path.iterdir()] == ["v.gif"]


def test_interrupted_atomic_dir_leaves_the_folder_alone(tmp_path):
    from explorer.atomic import atomic_dir

    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frame_00000.png").write_bytes(b"old")
    (frames / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt), atomic_dir(frames, "frame_*.png") as tmp:
        (tmp / "frame_00000.png").write_bytes(b"new")
        raise KeyboardInterrupt
    assert (frames / "frame_00000.png").read_bytes() == b"old"
    with atomic_dir(frames, "frame_*.png") as tmp:
        (tmp / "frame_00001.png").write_bytes(b"new")
    assert sorted(p.name for p in frames.iterdir()) == ["frame_00001.png", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("view", ["generate", "promptset"])
def test_screenshot_on_a_full_disk_prints_only_explorers_line(capsys, model_dir, tmp_path, view):
    """A file-size limit makes every write past 20 kB fail, as a full disk does: Qt's PNG writer let libpng print
    "libpng error: Write Error" before the explorer's line; now the PNG is encoded in memory and written atomically."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG) instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))

    shots = tmp_path / "shots"
    shots.mkdir()
    out = shots / "shot.png"
    out.write_bytes(b"old")
    args = ["--view", view, "--model", str(model_dir), "--set", "max_new=2"]
    if view == "promptset":  # a stored run, written before the limit
        (tmp_path / "p.txt").write_text("def f(x):\nhello world\n")
        code, _, err = cli(capsys, "speculate", "--target", model_dir, "--draft", model_dir, "--prompts",
                           tmp_path / "p.txt", "--max-new-tokens", 2, "--runs", 1, "--out", tmp_path / "run.jsonl")
        assert code == 0, err
        args = ["--view", view, "--run", str(tmp_path / "run.jsonl")]
    r = subprocess.run([sys.executable, "-m", "explorer", "screenshot", *args, "--size", "1280x720", "--out", str(out)],
                       capture_output=True, text=True, preexec_fn=limit, timeout=300,
                       env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == f"explorer: error: cannot write {out}: File too large\n"
    assert out.read_bytes() == b"old" and [p.name for p in shots.iterdir()] == ["shot.png"]
