"""Prompts as the model expects them: our ids against transformers' ``tok(prompt)`` and ``apply_chat_template``.

The tokenizers are the demo model's BPE with its ``<|endoftext|>`` playing BOS/EOS, configured the ways published
checkpoints do it: a Llama-style post-processor that adds BOS, ``add_bos_token`` in tokenizer_config.json, none at
all (transformers 5 follows the post-processor; so do we). Chat templates: tokenizer_config.json or
chat_template.jinja.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

from explorer.errors import ExplorerError  # noqa: E402
from explorer.models.checkpoint import default_model_dirs, load_model, load_prompt_format, load_tokenizer  # noqa: E402
from explorer.models.prompts import encode_prompt  # noqa: E402

DEMO = default_model_dirs()["target"]
PROMPTS = ["def add(a, b):\n    return a + b", "Hello world", "  leading spaces\tand tabs\n\n"]
CHATML = (
    "{% for message in messages %}{{ bos_token if loop.first }}<|im|>{{ message['role'] }}\n{{ message['content'] }}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|im|>assistant\n{% endif %}"
)
LLAMA_POST = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
}  # fmt: skip


def make_tokenizer_dir(tmp_path: Path, post_processor=None, **config) -> Path:
    d = tmp_path / "tok"
    d.mkdir()
    data = json.loads((DEMO / "tokenizer.json").read_text())
    data["post_processor"] = post_processor
    (d / "tokenizer.json").write_text(json.dumps(data))
    base = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    (d / "tokenizer_config.json").write_text(json.dumps(base | config))
    return d


def ours(d: Path, prompt: str, chat: bool = False, system: str | None = None) -> list[int]:
    return encode_prompt(load_tokenizer(d), load_prompt_format(d), prompt, chat, system)


@pytest.mark.parametrize(
    "post, config, adds_bos",
    [
        (LLAMA_POST, {}, True),  # tokenizer.json's post-processor adds BOS (Llama 3, TinyLlama)
        (LLAMA_POST, {"add_bos_token": True}, True),  # both say so (TinyLlama)
        (None, {}, False),  # neither (SmolLM2, Qwen2, the demo models)
        (None, {"add_bos_token": True}, False),  # transformers 5 follows tokenizer.json, not the flag
        (LLAMA_POST, {"add_bos_token": False}, True),
    ],
)
def test_ids_equal_transformers_tok(tmp_path, post, config, adds_bos):
    d = make_tokenizer_dir(tmp_path, post, **config)
    ref = transformers.AutoTokenizer.from_pretrained(d)
    for prompt in PROMPTS:
        ids = ours(d, prompt)
        assert ids == ref(prompt).input_ids
        assert (ids[0] == 0) == adds_bos


def test_demo_model_adds_nothing():
    lm = load_model(DEMO, device="cpu")
    assert lm.encode("def f():") == lm.tokenizer.encode("def f():", add_special_tokens=False).ids
    assert 0 not in lm.encode("def f():")


@pytest.mark.parametrize("where", ["config", "jinja"])
@pytest.mark.parametrize("system", [None, "You are terse."])
def test_chat_ids_equal_apply_chat_template(tmp_path, where, system):
    config = {"chat_template": CHATML} if where == "config" else {}
    d = make_tokenizer_dir(tmp_path, LLAMA_POST, **config)
    if where == "jinja":
        (d / "chat_template.jinja").write_text(CHATML)
    ref = transformers.AutoTokenizer.from_pretrained(d)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Hi there"}]
    want = ref.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    got = ours(d, "Hi there", chat=True, system=system)
    assert got == list(want)
    assert got.count(0) == 1 + len(messages)  # one BOS from the template (none added on top), one EOS per message


def test_chat_errors_are_one_line(tmp_path):
    d = make_tokenizer_dir(tmp_path)
    with pytest.raises(ExplorerError, match="no chat template"):
        ours(d, "hi", chat=True)
    with pytest.raises(ExplorerError, match="needs chat mode"):
        ours(d, "hi", system="be brief")
    bad = make_tokenizer_dir(tmp_path / "x", chat_template="{% if %}") if (tmp_path / "x").mkdir() is None else None
    with pytest.raises(ExplorerError, match="not valid Jinja"):
        ours(bad, "hi", chat=True)
    refuse = tmp_path / "y"
    refuse.mkdir()
    d = make_tokenizer_dir(refuse, chat_template="{{ raise_exception('only user turns') }}")
    with pytest.raises(ExplorerError, match="only user turns"):
        ours(d, "hi", chat=True)


def test_template_is_sandboxed(tmp_path):
    d = make_tokenizer_dir(tmp_path, chat_template="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ExplorerError, match="chat template"):
        ours(d, "hi", chat=True)


def test_eos_ids_from_generation_config(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(DEMO, d)
    gen = json.loads((d / "generation_config.json").read_text())
    (d / "generation_config.json").write_text(json.dumps(gen | {"eos_token_id": [0, 5]}))
    assert load_model(d, device="cpu").eos_token_ids == (0, 5)
    (d / "generation_config.json").write_text(json.dumps(gen | {"eos_token_id": 7}))
    assert load_model(d, device="cpu").eos_token_ids == (7,)
