"""Every broken model directory a user can hand us ends in one clear :class:`ExplorerError` line, never a traceback.

A tiny Llama (saved by transformers) with a tiny byte-level BPE ``tokenizer.json`` is built once per module; each
case copies it, breaks one thing, and checks both ``load_model`` (in process) and ``python -m explorer generate``
(exit code 2, exactly one stderr line starting with ``explorer: error:``, no traceback).
"""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from explorer.errors import ExplorerError
from explorer.models.checkpoint import load_model

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parent.parent
VOCAB = 128
CLI_TIMEOUT_S = 120
TRAINING_TEXT = ["hello world", "the quick brown fox jumps over the lazy dog", "a tiny tokenizer for tests"]
LONG_PROMPT = "hello world " * 20  # 60 tokens with the tokenizer below


def build_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=100, special_tokens=["<eos>"], show_progress=False)
    tok.train_from_iterator(TRAINING_TEXT * 10, trainer)
    assert tok.get_vocab_size() <= VOCAB
    tok.save(str(path / "tokenizer.json"))
    return tok


def build_model_dir(path: Path, max_position_embeddings: int) -> Path:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    build_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A valid tiny model directory (context 64). Tests copy it; never modify it in place."""
    return build_model_dir(tmp_path_factory.mktemp("ckpt") / "tiny-llama", max_position_embeddings=64)


@pytest.fixture(scope="module")
def short_context_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("ckpt") / "tiny-llama-ctx32", max_position_embeddings=32)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "explorer", *args], cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("explorer: error:"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert proc.stdout == "", proc.stdout
    return lines[0]


# --- ways to break a model directory. Each takes a fresh copy and returns (path to load, expected fragments) ---


def edit_config(d: Path, edit: Callable[[dict], None]) -> None:
    raw = json.loads((d / "config.json").read_text())
    edit(raw)
    (d / "config.json").write_text(json.dumps(raw, indent=2))


def missing_directory(d: Path):
    target = d.parent / "no-such-model"
    return target, ["model directory not found", str(target)]


def file_not_directory(d: Path):
    target = d.parent / "model.txt"
    target.write_text("not a model")
    return target, ["not a model directory", str(target)]


def missing_config(d: Path):
    (d / "config.json").unlink()
    return d, ["config.json not found"]


def config_not_json(d: Path):
    (d / "config.json").write_text('{"model_type": "llama", ')
    return d, ["config.json is not valid JSON"]


def config_not_object(d: Path):
    (d / "config.json").write_text("[1, 2, 3]")
    return d, ["config.json must hold a JSON object"]


def config_missing_key(d: Path):
    edit_config(d, lambda raw: raw.pop("hidden_size"))
    return d, ["config.json", "hidden_size"]


def missing_tokenizer(d: Path):
    (d / "tokenizer.json").unlink()
    return d, ["no tokenizer.json"]


def tokenizer_not_json(d: Path):
    (d / "tokenizer.json").write_text("this is not a tokenizer")
    return d, ["cannot read tokenizer"]


def tokenizer_wrong_schema(d: Path):
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "NoSuchModel"}}))
    return d, ["cannot read tokenizer"]


def truncated_weights(d: Path):
    file = d / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    return d, ["model.safetensors"]


def garbage_weights(d: Path):
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return d, ["model.safetensors"]


def missing_shard(d: Path):
    tensors = load_file(d / "model.safetensors")
    (d / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(d / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "model-00002-of-00002.safetensors").unlink()
    return d, ["model-00002-of-00002.safetensors", "missing"]


class _Touch:
    """Unpickling this creates a marker file: proof that a pickle was (wrongly) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def pickle_only(d: Path):
    (d / "model.safetensors").unlink()
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump(_Touch(d.parent / "UNPICKLED"), f)
    return d, ["pickle", "safetensors"]


def unsupported_architecture(d: Path):
    def edit(raw):
        raw["model_type"] = "gpt2"
        raw["architectures"] = ["GPT2LMHeadModel"]

    edit_config(d, edit)
    return d, ["unsupported architecture", "gpt2"]


def yarn_rope(d: Path):
    def edit(raw):
        raw["rope_parameters"] = {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 16,
        }

    edit_config(d, edit)
    return d, ["unsupported rope type", "yarn"]


def yarn_rope_legacy_spelling(d: Path):
    def edit(raw):
        raw.pop("rope_parameters", None)
        raw["rope_theta"] = 10000.0
        raw["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}

    edit_config(d, edit)
    return d, ["unsupported rope type", "yarn"]


def missing_weight(d: Path):
    tensors = load_file(d / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, ["weights missing", "model.layers.1.mlp.down_proj.weight"]


def wrong_shape(d: Path):
    edit_config(d, lambda raw: raw.update(intermediate_size=48))
    return d, ["shape", "config says"]


CASES = [
    missing_directory,
    file_not_directory,
    missing_config,
    config_not_json,
    config_not_object,
    config_missing_key,
    missing_tokenizer,
    tokenizer_not_json,
    tokenizer_wrong_schema,
    truncated_weights,
    garbage_weights,
    missing_shard,
    pickle_only,
    unsupported_architecture,
    yarn_rope,
    yarn_rope_legacy_spelling,
    missing_weight,
    wrong_shape,
]


@pytest.fixture(params=CASES, ids=lambda case: case.__name__)
def broken(request, base_dir, tmp_path) -> tuple[Path, list[str], Path]:
    model = shutil.copytree(base_dir, tmp_path / "model")
    target, fragments = request.param(model)
    return target, fragments, tmp_path


def test_load_model_raises_explorer_error(broken, monkeypatch):
    target, fragments, tmp = broken

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the loader must never unpickle anything")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(ExplorerError) as info:
        load_model(target, dtype="float32", device="cpu", tokenizer=True)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not (tmp / "UNPICKLED").exists()


def test_cli_reports_one_line_and_exits_2(broken):
    target, fragments, tmp = broken
    proc = run_cli("generate", "--model", str(target), "--prompt", "x", "--device", "cpu")
    assert_one_line_error(proc, *fragments)
    assert not (tmp / "UNPICKLED").exists()


# --- the valid directories really are valid (so the failures above come from what each case broke) ---------------


def test_base_dir_loads_and_generates(base_dir):
    lm = load_model(base_dir, dtype="float32", device="cpu", tokenizer=True)
    assert lm.eos_token_ids == (0,)
    proc = run_cli(
        "generate", "--model", str(base_dir), "--prompt", "x", "--device", "cpu", "--max-new-tokens", "4", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    assert result["prompt_ids"] == lm.encode("x")
    assert 1 <= len(result["token_ids"]) <= 4


def test_pickle_marker_works(tmp_path):
    """The marker used by ``pickle_only`` does create its file when unpickled (so its absence means something)."""
    data = pickle.dumps(_Touch(tmp_path / "UNPICKLED"))
    pickle.loads(data)
    assert (tmp_path / "UNPICKLED").exists()


# --- prompts longer than the model's context ------------------------------------------------------------------------


def test_cli_prompt_longer_than_context(short_context_dir):
    lm = load_model(short_context_dir, dtype="float32", device="cpu", tokenizer=True)
    assert len(lm.encode(LONG_PROMPT)) > 32
    proc = run_cli("generate", "--model", str(short_context_dir), "--prompt", LONG_PROMPT, "--device", "cpu")
    assert_one_line_error(proc, "context")


def test_cli_prompt_plus_new_tokens_longer_than_context(short_context_dir):
    lm = load_model(short_context_dir, dtype="float32", device="cpu", tokenizer=True)
    prompt = "hello world " * 5
    n = len(lm.encode(prompt))
    assert n < 32
    proc = run_cli(
        "generate",
        "--model",
        str(short_context_dir),
        "--prompt",
        prompt,
        "--device",
        "cpu",
        "--max-new-tokens",
        str(32 - n + 1),
    )
    assert_one_line_error(proc, "context")


def test_draft_with_another_tokenizer_is_refused(base_dir, tmp_path):
    """Tokenizers are compared, not vocab sizes: the demo draft cannot serve this tiny target."""
    from explorer.models.checkpoint import default_model_dirs
    from explorer.session import Session

    s = Session(target_dir=base_dir, draft_dir=default_model_dirs()["draft"])
    with pytest.raises(ExplorerError, match="different tokenizers"):
        s.load()
    same = tmp_path / "same-tokenizer-draft"
    shutil.copytree(base_dir, same)
    s = Session(target_dir=base_dir, draft_dir=same)
    s.load()
    assert s.draft is not None and s.target.encode("hello world") == s.draft.encode("hello world")
