"""Draft heads on the target (Medusa, EAGLE, MTP): greedy is lossless, speculative sampling keeps the target's
distribution (χ²), every node records its head, head files round-trip and published Medusa files load."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from explorer.errors import ExplorerError
from explorer.models.checkpoint import LoadedModel, default_head_dirs, default_model_dirs, load_model
from explorer.models.decoder import CausalLM, ModelConfig
from explorer.models.generate import generate, next_token_probs
from explorer.speculative.engine import Speculator, run_speculation
from explorer.speculative.heads import Heads, build_heads, find_heads, load_heads, parse_choices
from explorer.speculative.records import SpecOptions
from explorer.speculative.stats import per_head_acceptance
from explorer.speculative.train_heads import write_heads

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {
    "medusa": SpecOptions(method="medusa", medusa_tree="0,1,0.0,0.1,1.0,0.0.0"),
    "eagle": SpecOptions(method="eagle", tree_depth=3, tree_topk=2, tree_budget=6),
    "mtp": SpecOptions(method="mtp", gamma=3),
}


def tiny_target(seed: int = 1, vocab: int = 97, std: float = 0.3) -> LoadedModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        model_type="llama", vocab_size=vocab, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
        num_kv_heads=1, head_dim=16, rope_scaling={"rope_type": "default"}, max_position_embeddings=256,
    )  # fmt: skip
    model = CausalLM(cfg)
    for p in model.parameters():
        p.data.normal_(0, std)
    return LoadedModel(model.eval().requires_grad_(False), None, cfg, Path(f"random-{seed}"), (), None)


def random_heads(kind: str, target: LoadedModel, std: float = 0.2, seed: int = 0, vocab=None) -> Heads:
    """Random heads; ``vocab``: a draft vocabulary (FR-Spec), the only tokens the heads may propose."""
    torch.manual_seed(seed)
    module = build_heads(kind, target.config, 3)
    for p in module.parameters():
        p.data.normal_(0, std)
    return Heads(kind, module.eval().requires_grad_(False), {"draft_vocab": vocab} if vocab else {}, None)


@pytest.mark.parametrize("vocab", [None, list(range(0, 97, 2))], ids=["whole vocabulary", "draft vocabulary"])
@pytest.mark.parametrize("kind", ["medusa", "eagle", "mtp"])
def test_greedy_is_lossless_with_random_heads(kind, vocab):
    target = tiny_target()
    heads = random_heads(kind, target, vocab=vocab)
    if vocab:  # every drafted token comes from the draft vocabulary
        steps = run_speculation(target, None, [5, 17, 3, 88], 30, OPTIONS[kind], heads=heads, runs=1).steps
        assert {t for s in steps for t in s.tree.tokens} <= set(vocab)
    for prompt in ([5, 17, 3, 88, 41, 2, 9], [7], [1, 2]):
        result = run_speculation(target, None, prompt, 40, OPTIONS[kind], heads=heads, runs=1)
        assert result.token_ids == generate(target, prompt, 40, stop_at_eos=False)
        assert result.stats["first_divergence"] is None
        assert all(s.tree.source is not None and len(s.tree.source) == len(s.tree.tokens) for s in result.steps)


@pytest.mark.parametrize("kind", ["medusa", "eagle", "mtp"])
def test_shipped_heads_are_lossless_and_accept_something(kind):
    path = default_head_dirs()[kind]
    if not path.is_dir():
        pytest.skip(f"{path} not trained yet")
    target = load_model(default_model_dirs()["target"], dtype="float32", device="cpu")
    heads = load_heads(path, target)
    ids = target.encode("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    ")
    opt = SpecOptions(method=kind, detail=False)
    result = run_speculation(target, None, ids, 48, opt, heads=heads, runs=1)
    assert result.token_ids == generate(target, ids, 48)
    assert result.stats["alpha"] > 0
    assert result.stats["per_head_acceptance"][0] > 0


@pytest.mark.parametrize("vocab", [None, [0, 1, 2, 3, 5, 8, 9]], ids=["whole vocabulary", "draft vocabulary"])
@pytest.mark.parametrize("kind", ["medusa", "eagle", "mtp"])
def test_speculative_sampling_with_heads_preserves_target_distribution(kind, vocab):
    """5k draws of the first new token: the distribution is the target's (χ², p > 1e-3), head q as the draft;
    with a draft vocabulary q is 0 outside it, and the target's other tokens come from the residual."""
    target = tiny_target(5, vocab=12, std=0.6)
    heads = random_heads(kind, target, std=0.5, seed=3, vocab=vocab)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 3, 1, 4]
    opt = {
        "medusa": SpecOptions(method="medusa", medusa_tree="0,1,2,0.0"),
        "eagle": SpecOptions(method="eagle", tree_depth=2, tree_topk=3, tree_budget=6),
        "mtp": SpecOptions(method="mtp", gamma=2),
    }[kind]
    opt.accept, opt.temperature, opt.detail, opt.seed = "sample", 1.0, False, 1
    spec = Speculator(target, None, prompt, 3, opt, heads)
    with torch.inference_mode():
        p = next_token_probs(target.model(torch.tensor([prompt]))[0, -1], 1.0, None).double().numpy()
    n, counts, rejected = 5000, np.zeros(12), 0
    for _ in range(n):
        record = spec.step()
        counts[record.new_tokens[0]] += 1
        rejected += record.rejected is not None and not record.accepted
        spec.rewind(len(prompt))
    assert 0 < rejected < n
    assert chi2_pvalue(counts, p) > 1e-3


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson χ² (bins expecting < 5 merged); the p-value from the regularised upper incomplete gamma."""
    expected = probs * counts.sum()
    small = expected < 5
    obs, exp = np.append(counts[~small], counts[small].sum()), np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = torch.tensor((len(obs) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(df, torch.tensor(stat / 2, dtype=torch.float64)))


def test_per_head_acceptance_counts_reached_heads():
    target = tiny_target()
    heads = random_heads("mtp", target, std=0.0)  # zero heads: the LM head of an embedding-only feature
    result = run_speculation(target, None, [5, 17, 3, 88], 20, OPTIONS["mtp"], heads=heads, compare=False)
    per_head = per_head_acceptance(result.steps)
    assert per_head == result.stats["per_head_acceptance"]
    reached0 = sum(1 for s in result.steps if len(s.decisions))
    took0 = sum(1 for s in result.steps if s.accepted)
    assert per_head[0] == pytest.approx(took0 / reached0)


def test_heads_round_trip_and_refuse_other_targets(tmp_path):
    target = tiny_target()
    for kind in ("medusa", "eagle", "mtp"):
        heads = random_heads(kind, target)
        card = {"top1": [0.5] * heads.count, "top5": [0.9] * heads.count, "sequences": 1, "prefix": 1,
                "continuation": 1, "steps": 1, "seconds": 1.0, "text_files": 1, "corpus_tokens": 1,
                "medusa_choices": [[0], [0, 0]] if kind == "medusa" else None}  # fmt: skip
        out = write_heads(tmp_path / kind, kind, heads.module, target, card, 3, "explorer train-heads ...")
        assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "heads.safetensors"]
        back = load_heads(out, target)
        assert back.kind == kind
        for (k, a), b in zip(heads.module.state_dict().items(), back.module.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a.half().float(), msg=k)
        with pytest.raises(ExplorerError, match="hidden_size"):
            load_heads(out, tiny_target_wider())
    assert load_heads(tmp_path / "medusa", target).medusa_choices() == [(0,), (0, 0)]


def tiny_target_wider() -> LoadedModel:
    cfg = ModelConfig(
        model_type="llama", vocab_size=97, hidden_size=48, intermediate_size=64, num_layers=1, num_heads=2,
        num_kv_heads=1, head_dim=24, rope_scaling={"rope_type": "default"},
    )  # fmt: skip
    return LoadedModel(CausalLM(cfg).eval(), None, cfg, Path("wider"), (), None)


def test_published_medusa_file_loads_when_shapes_fit(tmp_path):
    """Medusa's own layout: medusa_lm_head.safetensors, keys {i}.0.linear.weight/bias and {i}.1.weight."""
    target = tiny_target()
    d, v = 32, 97
    tensors = {}
    for i in range(2):
        tensors[f"{i}.0.linear.weight"] = torch.randn(d, d) * 0.1
        tensors[f"{i}.0.linear.bias"] = torch.zeros(d)
        tensors[f"{i}.1.weight"] = torch.randn(v, d) * 0.1
    save_file(tensors, str(tmp_path / "medusa_lm_head.safetensors"))
    heads = load_heads(tmp_path, target)
    assert heads.kind == "medusa" and heads.count == 2 and heads.module.own_lm_head
    result = run_speculation(target, None, [5, 17, 3, 88], 24, SpecOptions(method="medusa"), heads=heads, runs=1)
    assert result.token_ids == generate(target, [5, 17, 3, 88], 24, stop_at_eos=False)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "medusa", "draft_vocab": [1, 2, 3]}))
    with pytest.raises(ExplorerError, match="draft_vocab needs heads that share the target's LM head"):
        load_heads(tmp_path, target)
    (tmp_path / "config.json").unlink()
    tensors["0.1.weight"] = torch.randn(v + 1, d)
    save_file(tensors, str(tmp_path / "medusa_lm_head.safetensors"))
    with pytest.raises(ExplorerError, match="shape"):
        load_heads(tmp_path, target)


def test_medusa_tree_spelling():
    assert parse_choices("0,1,0.0,0.1,0.0.0") == [(0,), (1,), (0, 0), (0, 1), (0, 0, 0)]
    with pytest.raises(ExplorerError, match="parent"):
        parse_choices("0,1.0")
    with pytest.raises(ExplorerError, match="medusa_tree|ranks"):
        SpecOptions(method="medusa", medusa_tree="0,x").check(False, "medusa")
    with pytest.raises(ExplorerError, match="needs medusa heads"):
        SpecOptions(method="medusa").check(True, None)


def test_heads_are_found_beside_the_model(tmp_path):
    model = tmp_path / "demo-target"
    (tmp_path / "demo-heads-eagle").mkdir(parents=True)
    (tmp_path / "demo-heads-eagle" / "config.json").write_text(json.dumps({"kind": "eagle"}))
    (model / "heads-mtp").mkdir(parents=True)
    (model / "heads-mtp" / "config.json").write_text(json.dumps({"kind": "mtp"}))
    assert find_heads(model) == {"eagle": tmp_path / "demo-heads-eagle", "mtp": model / "heads-mtp"}


def test_train_heads_cli_writes_a_card(tmp_path):
    out = tmp_path / "h"
    cmd = [sys.executable, "-m", "explorer", "train-heads", "--kind", "mtp", "--heads", "2", "--out", str(out),
           "--text", str(ROOT / "explorer" / "speculative" / "engine.py"), "--sequences", "16", "--continuation", "4",
           "--steps", "2", "--batch", "16"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    card = (out / "README.md").read_text()
    assert "| 2 |" in card and "explorer train-heads --kind mtp" in card
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "mtp" and config["draft_vocab"] is None
    bad = subprocess.run([*cmd[:-2], "--batch", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("explorer: error: --batch must be")


def test_train_heads_with_a_draft_vocabulary(tmp_path):
    """--draft-vocab N: the N tokens the target emitted most often, recorded in config.json and the card, and the
    loaded heads draft from them only; a config naming tokens the target lacks is one line."""
    out = tmp_path / "h"
    cmd = [sys.executable, "-m", "explorer", "train-heads", "--kind", "eagle", "--out", str(out), "--text",
           str(ROOT / "explorer" / "speculative" / "engine.py"), "--sequences", "16", "--continuation", "8",
           "--steps", "2", "--batch", "32", "--draft-vocab", "40"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    vocab = config["draft_vocab"]
    assert len(vocab) == 40 == len(set(vocab)) and vocab == sorted(vocab)
    assert "Drafts from the 40 tokens" in (out / "README.md").read_text()
    target = load_model(default_model_dirs()["target"], dtype="float32", device="cpu")
    heads = load_heads(out, target)
    assert heads.draft_vocab == vocab
    ids = target.encode("def add(a, b):\n    return a + b\n")
    result = run_speculation(target, None, ids, 24, SpecOptions(method="eagle", detail=False), heads=heads, runs=1)
    assert result.token_ids == generate(target, ids, 24)
    assert {t for s in result.steps for t in s.tree.tokens} <= set(vocab)
    config["draft_vocab"] = [0, 5000]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExplorerError, match="draft_vocab must be distinct token ids in 0..4095"):
        load_heads(out, target)


def test_draft_loss_trains_on_the_draft_vocabulary_rows_alone(monkeypatch):
    """--draft-loss: the soft targets and the heads' training logits cover the draft vocabulary only (what makes a
    49k-token model's heads trainable on a CPU); the card says so."""
    from explorer.speculative import train_heads

    rows = []
    real = train_heads.soft_targets
    monkeypatch.setattr(train_heads, "soft_targets", lambda f, lm: rows.append(lm.shape[0]) or real(f, lm))
    target = load_model(default_model_dirs()["target"], dtype="float32", device="cpu")
    text = [ROOT / "explorer" / "speculative" / "engine.py"]
    for kind in ("mtp", "eagle"):
        rows.clear()
        with torch.enable_grad():
            _, card = train_heads.train(target, kind, 2, 2, text, 0, sequences=16, gen=4, batch=32, draft_vocab=40,
                                        draft_loss=True, log=lambda s: None)  # fmt: skip
        assert rows and set(rows) == {40}
        assert card["draft_loss"] and len(card["draft_vocab"]) == 40
    rows.clear()
    with torch.enable_grad():
        train_heads.train(target, "mtp", 2, 1, text, 0, sequences=16, gen=4, batch=32, draft_vocab=40,
                          log=lambda s: None)  # fmt: skip
    assert set(rows) == {target.config.vocab_size}  # without it, the whole vocabulary as before


def test_eagle_mlp_width_is_an_option_that_round_trips(tmp_path):
    """--intermediate N: EAGLE's layer with a narrower MLP (what a drafted token streams on a small target),
    recorded in config.json as intermediate_size and rebuilt from it; a bad width is one line."""
    target = tiny_target()
    module = build_heads("eagle", target.config, 1, intermediate=16)
    assert module.layer.mlp.down_proj.weight.shape == (32, 16)
    assert build_heads("eagle", target.config, 1).layer.mlp.down_proj.weight.shape == (32, 64)  # the target's
    card = {"top1": [0.5], "top5": [0.9], "sequences": 1, "prefix": 1, "continuation": 1, "steps": 1,
            "seconds": 1.0, "text_files": 1, "corpus_tokens": 1}  # fmt: skip
    out = write_heads(tmp_path / "e", "eagle", module, target, card, 1, "explorer train-heads ...")
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] == 16
    back = load_heads(out, target)
    assert back.module.layer.mlp.down_proj.weight.shape == (32, 16)
    result = run_speculation(target, None, [5, 17, 3, 88], 20, OPTIONS["eagle"], heads=back, runs=1)
    assert result.token_ids == generate(target, [5, 17, 3, 88], 20, stop_at_eos=False)
    config["intermediate_size"] = "wide"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExplorerError, match="intermediate_size must be a positive integer"):
        load_heads(out, target)


def test_eagle_chain_drafting_matches_a_step_by_step_reference():
    """EAGLE's prompt prefill happens with the target's (entries 0 .. n − 3), its RoPE comes from a table equal to
    computing it, and a chain (one candidate per depth, unmasked) drafts what feeding EAGLE one entry at a time
    from the target's features drafts; the distributions come back on the whole vocabulary."""
    from explorer.models.decoder import rope_cos_sin
    from explorer.speculative.heads import capture_features

    target = tiny_target()
    vocab = list(range(0, 97, 2))
    heads = random_heads("eagle", target, vocab=vocab)
    eagle, prompt = heads.module, [5, 17, 3, 88, 41, 2, 9]
    spec = Speculator(target, None, prompt, 20, SpecOptions(method="eagle", tree_depth=4, tree_topk=1), heads)
    assert spec.ecache.length == len(prompt) - 2
    cos, sin = eagle.rope_table(40)
    ref = rope_cos_sin(eagle.inv_freq, torch.arange(40)[None], torch.float32)
    assert torch.equal(cos, ref[0]) and torch.equal(sin, ref[1])
    drafted = spec.drafter.draft(4)
    tokens, parent, qs, dists = drafted.tokens, drafted.parent, drafted.q, drafted.dists
    assert parent == [-1, 0, 1, 2] and spec.ecache.length == len(prompt) - 1  # drafted entries dropped
    assert all(d.shape == (97,) and float(d[1::2].sum()) == 0 for d in dists)

    with torch.inference_mode():
        n, embed, lm = len(prompt), target.model.model.embed_tokens.weight, target.model.lm_head.weight[vocab]
        with capture_features(target.model) as feats:
            target.model(torch.tensor([prompt[:-1]]))
        cache = eagle.new_cache(64)
        out = eagle(feats[0], embed[prompt[1:]][None], torch.arange(n - 1)[None], cache=cache)[0, -1]
        expect = []
        for depth in range(1, 5):
            probs = torch.softmax(out @ lm.T, -1)
            expect.append(vocab[int(probs.argmax())])
            assert qs[depth - 1] == pytest.approx(float(probs.max()), rel=1e-4)
            pos = torch.tensor([[n - 2 + depth]])
            out = eagle(out.view(1, 1, -1), embed[expect[-1]].view(1, 1, -1), pos, cache=cache)[0, -1]
    assert tokens == expect


def test_loaded_heads_multiply_through_float16_copies_on_the_cpu():
    """On the CPU, loaded float32 heads draft through float16 copies of their weights (what head files store; the
    cold matrix-vector products take less than half the time), the state dict stays float32, and the product is
    the float32 one up to float16's rounding of the input and output."""
    from explorer.models.decoder import inference_linear
    from explorer.speculative.heads import for_inference

    target = tiny_target()
    torch.manual_seed(0)
    w, b = torch.randn(24, 32), torch.randn(24)
    for rows in (1, 3):
        x = torch.randn(1, rows, 32)
        out = inference_linear(x, w.half(), b)
        assert out.dtype == torch.float32 and out.shape == (1, rows, 24)
        ref = torch.nn.functional.linear(x.half().float(), w.half().float(), b)
        torch.testing.assert_close(out, ref, rtol=2e-3, atol=2e-3)
    heads = random_heads("eagle", target, vocab=list(range(0, 97, 2)))
    state = {k: v.clone() for k, v in heads.module.state_dict().items()}
    for_inference(heads.module)
    assert heads.module.half_weights and heads.module.layer.mlp.gate_up[0].dtype == torch.float16
    assert heads.module.fc.inference[0].dtype == torch.float16
    assert all(v.dtype == torch.float32 and torch.equal(v, state[k]) for k, v in heads.module.state_dict().items())
    spec = Speculator(target, None, [5, 17, 3, 88], 20, OPTIONS["eagle"], heads)
    assert spec.drafter.lm_head().dtype == torch.float16 and spec.drafter.lm_head().shape == (49, 32)
    result = run_speculation(target, None, [5, 17, 3, 88], 30, OPTIONS["eagle"], heads=heads, runs=1)
    assert result.token_ids == generate(target, [5, 17, 3, 88], 30, stop_at_eos=False)
    assert not for_inference(random_heads("mtp", target).module, half=False).half_weights
    medusa = random_heads("medusa", target)  # no draft vocabulary: the whole one's rows, copied to float16 too
    for_inference(medusa.module)
    spec = Speculator(target, None, [5, 17, 3, 88], 20, OPTIONS["medusa"], medusa)
    rows = spec.heads_drafter.lm_head()
    assert rows.dtype == torch.float16 and torch.equal(rows, target.model.lm_head.weight.half())
    result = run_speculation(target, None, [5, 17, 3, 88], 30, OPTIONS["medusa"], heads=medusa, runs=1)
    assert result.token_ids == generate(target, [5, 17, 3, 88], 30, stop_at_eos=False)


def test_eagle_one_entry_forward_equals_its_forward():
    """EAGLE's lean one-entry forward (a chain's next depth) computes what its forward computes for that entry,
    and leaves the cache as it would: float32 and float16 copies, grouped-query attention."""
    from explorer.speculative.heads import for_inference

    target = tiny_target()
    for half in (False, True):
        heads = random_heads("eagle", target)
        eagle = for_inference(heads.module, half=half)
        assert eagle.can_forward_one
        cos, sin = eagle.rope_table(16)
        torch.manual_seed(1)
        feats, embs = torch.randn(1, 6, 32), torch.randn(1, 6, 32)
        with torch.inference_mode():
            ref_cache, cache = eagle.new_cache(16), eagle.new_cache(16)
            ref = eagle(feats, embs, torch.arange(6)[None], cache=ref_cache)[0, -1]
            eagle(feats[:, :5], embs[:, :5], torch.arange(5)[None], cache=cache)
            one = eagle.forward_one(feats[0, 5], embs[0, 5], cos[0, 0, 5], sin[0, 0, 5], cache)
        torch.testing.assert_close(one, ref, rtol=1e-5, atol=1e-5)
        assert cache.length == ref_cache.length == 6
        torch.testing.assert_close(cache.k[:, :, :, :6], ref_cache.k[:, :, :, :6], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache.v[:, :, :, :6], ref_cache.v[:, :, :, :6], rtol=1e-5, atol=1e-5)


def test_lookup_falls_back_on_a_tree_of_heads_wider_than_its_chain():
    """Prompt lookup drafts at most γ tokens, but the EAGLE tree it falls back on where no n-gram matches keeps up
    to tree_budget nodes: the caches leave room for the wider of the two, and greedy stays lossless."""
    target = tiny_target()
    heads = random_heads("eagle", target)
    prompt = [5, 17, 3, 88, 41, 2, 9]
    opt = SpecOptions(method="lookup", gamma=2, tree_depth=3, tree_topk=3, tree_budget=9)
    spec = Speculator(target, None, prompt, 24, opt, heads)
    assert spec.max_nodes == 9
    steps = []
    while not spec.done:
        steps.append(spec.step())
    assert any(len(s.tree.tokens) > opt.gamma for s in steps)  # the fallback's trees were verified
    assert spec.new_tokens == generate(target, prompt, 24, stop_at_eos=False)


def test_lookup_sampling_with_a_heads_fallback_preserves_target_distribution(kind="mtp"):
    """Where no n-gram matches, prompt lookup's heads draft, and a sampled MTP chain is accepted against its q (not
    as a deterministic candidate, which skews the distribution): 5k draws of the first new token, χ²."""
    target = tiny_target(5, vocab=12, std=0.6)
    heads = random_heads(kind, target, std=0.5, seed=3)
    prompt = [3, 1, 4, 0, 5, 9, 2, 6, 7]  # the last token appears nowhere before: no continuation, the heads draft
    opt = SpecOptions(method="lookup", gamma=2, tree_depth=2, tree_topk=3, tree_budget=6, accept="sample",
                      temperature=1.0, detail=False, seed=1)  # fmt: skip
    spec = Speculator(target, None, prompt, 3, opt, heads)
    with torch.inference_mode():
        p = next_token_probs(target.model(torch.tensor([prompt]))[0, -1], 1.0, None).double().numpy()
    n, counts = 5000, np.zeros(12)
    for _ in range(n):
        record = spec.step()
        assert len(record.tree.tokens) > 0  # the heads drafted
        counts[record.new_tokens[0]] += 1
        spec.rewind(len(prompt))
    assert chi2_pvalue(counts, p) > 1e-3
