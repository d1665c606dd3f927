"""The shipped demo pair: within budget, loads, generates, and matches transformers token for token."""

import json

import pytest
import torch

from explorer.models.checkpoint import default_model_dirs, load_model
from explorer.models.generate import generate
from explorer.models.train_demo import flops_per_token, param_count

DIRS = default_model_dirs()
PROMPT = "import os\n\n\ndef read_config(path):\n    "


@pytest.fixture(scope="module")
def target():
    return load_model(DIRS["target"], dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def draft():
    return load_model(DIRS["draft"], dtype="float32", device="cpu")


def test_sizes_and_budget(target, draft):
    assert 5e6 <= param_count(target.config) <= 15e6
    assert flops_per_token(draft.config) <= flops_per_token(target.config) / 5
    total = sum(f.stat().st_size for d in DIRS.values() for f in d.glob("*.safetensors"))
    assert total <= 40e6
    for d in DIRS.values():
        assert "held-out loss" in (d / "README.md").read_text()
        assert json.loads((d / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


def test_pair_shares_one_tokenizer(target, draft):
    assert target.tokenizer.to_str() == draft.tokenizer.to_str()
    assert target.tokenizer.get_vocab_size() == target.config.vocab_size


def test_demo_generates_code(target):
    ids = target.encode(PROMPT)
    new = generate(target, ids, 24)
    assert len(new) >= 1
    assert target.decode(ids) == PROMPT  # byte-level BPE round-trips exactly


@pytest.mark.parametrize("role", ["target", "draft"])
def test_greedy_tokens_equal_transformers(role, target, draft):
    transformers = pytest.importorskip("transformers")
    lm = {"target": target, "draft": draft}[role]
    ref = transformers.AutoModelForCausalLM.from_pretrained(DIRS[role], dtype=torch.float32).eval()
    ids = lm.encode(PROMPT)
    n = 48
    ours = generate(lm, ids, n)
    with torch.no_grad():
        theirs = ref.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)[0, len(ids) :].tolist()
    assert ours == theirs
