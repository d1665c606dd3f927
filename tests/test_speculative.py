"""Speculative decoding: greedy is lossless, tree verification equals sequential decoding, sampling preserves the
target distribution (χ²), caches keep exactly the accepted path, typical acceptance follows its formula."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.errors import ExplorerError
from explorer.models.checkpoint import LoadedModel, default_model_dirs, load_model
from explorer.models.decoder import CausalLM, ModelConfig
from explorer.models.generate import generate, next_token_probs
from explorer.speculative.drafters import lookup_continuation, lookup_match
from explorer.speculative.engine import Speculator, run_speculation, speculate, verify
from explorer.speculative.records import SpecOptions, TargetOnly
from explorer.speculative.stats import first_divergence, theoretical_speedup

DIRS = default_model_dirs()
PROMPTS = [
    "import os\n\n\ndef read_config(path):\n    ",
    'class Cache:\n    """A small LRU cache."""\n\n    def __init__(self, size):\n        ',
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
]
GREEDY_OPTIONS = [
    SpecOptions(gamma=1),
    SpecOptions(gamma=3),
    SpecOptions(gamma=5),
    SpecOptions(method="tree", tree_depth=4, tree_topk=2, tree_budget=8),
    SpecOptions(method="tree", tree_depth=6, tree_topk=4, tree_budget=24),
    SpecOptions(method="lookup", gamma=4),
]
IDS = ["chain1", "chain3", "chain5", "tree-d4k2b8", "tree-d6k4b24", "lookup4"]


@pytest.fixture(scope="module")
def pair():
    return load_model(DIRS["target"], dtype="float32", device="cpu"), load_model(DIRS["draft"], dtype="float32")


def tiny_lm(seed: int, vocab: int = 97, hidden: int = 32, layers: int = 2, std: float = 0.3, tokenizer=None):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        model_type="llama", vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_layers=layers,
        num_heads=2, num_kv_heads=1, head_dim=hidden // 2, rope_scaling={"rope_type": "default"},
        max_position_embeddings=256,
    )  # fmt: skip
    model = CausalLM(cfg)
    for p in model.parameters():
        p.data.normal_(0, std)
    return LoadedModel(model.eval().requires_grad_(False), tokenizer, cfg, Path(f"random-{seed}"), (), None)


@pytest.fixture(scope="module")
def random_pair():
    return tiny_lm(1), tiny_lm(2, hidden=16, layers=1)


@pytest.mark.parametrize("opt", GREEDY_OPTIONS, ids=IDS)
def test_greedy_is_lossless_on_demo_pair(pair, opt):
    target, draft = pair
    for prompt in PROMPTS:
        ids = target.encode(prompt)
        result = run_speculation(target, draft, ids, 48, opt, compare=False)
        assert result.token_ids == generate(target, ids, 48), prompt
        assert sum(len(s.new_tokens) for s in result.steps) == len(result.token_ids)


@pytest.mark.parametrize("opt", GREEDY_OPTIONS, ids=IDS)
def test_greedy_is_lossless_on_random_pair(random_pair, opt):
    target, draft = random_pair
    for seed in range(3):
        ids = torch.randint(0, 97, (12,), generator=torch.Generator().manual_seed(seed)).tolist()
        result = run_speculation(target, draft, ids, 40, opt)
        assert result.token_ids == generate(target, ids, 40)
        assert result.stats["first_divergence"] is None


def test_tree_verification_logits_equal_sequential_forward(random_pair):
    target, _ = random_pair
    model = target.model
    prefix = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(3))
    parent = [-1, -1, 0, 0, 1, 2, 2, 5, -1, 7]
    tokens = [int(t) for t in torch.randint(0, 97, (len(parent),), generator=torch.Generator().manual_seed(4))]
    cache = model.new_cache(64)
    model(prefix[:, :-1], cache=cache)
    root = int(prefix[0, -1])
    logits, mask, position_ids, depth = verify(model, cache, root, tokens, parent)
    assert mask is not None and position_ids.tolist() == [8] + [8 + int(d) for d in depth]
    for i in range(-1, len(parent)):
        path, j = [], i
        while j >= 0:
            path.append(tokens[j])
            j = parent[j]
        seq = torch.cat([prefix, torch.tensor([path[::-1]], dtype=torch.long)], dim=1)
        torch.testing.assert_close(logits[i + 1], model(seq)[0, -1], atol=1e-5, rtol=0)


def fresh_kv(lm: LoadedModel, ids: list[int]):
    cache = lm.model.new_cache(len(ids) + 1)
    lm.model(torch.tensor([ids]), cache=cache)
    return cache.k[:, :, :, : len(ids)], cache.v[:, :, :, : len(ids)]


@pytest.mark.parametrize("opt", GREEDY_OPTIONS + [SpecOptions(method="tree", accept="sample", temperature=1.0)])
def test_caches_equal_fresh_prefill_after_each_step(random_pair, opt):
    target, draft = random_pair
    spec = Speculator(target, draft, list(range(5, 15)), 30, opt)
    with torch.inference_mode():
        while not spec.done:
            spec.step()
            text = spec.context[:-1]  # the invariant: everything but the next root
            for lm, cache in ((target, spec.tcache), (draft, spec.dcache)):
                if cache is None or spec.done:
                    continue
                # The target holds all of it; the draft may lag by the one token it catches up on next step.
                assert cache.length == len(text) if lm is target else len(text) - 1 <= cache.length <= len(text)
                k, v = fresh_kv(lm, text[: cache.length])
                torch.testing.assert_close(cache.k[:, :, :, : cache.length], k, atol=1e-5, rtol=0)
                torch.testing.assert_close(cache.v[:, :, :, : cache.length], v, atol=1e-5, rtol=0)


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson χ² test (bins with expected count < 5 merged); p-value from the regularised upper gamma."""
    n = counts.sum()
    expected = probs * n
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(stat / 2.0)))


@pytest.mark.parametrize(
    "opt",
    [
        SpecOptions(method="chain", accept="sample", gamma=2, temperature=1.0),
        SpecOptions(method="chain", accept="sample", gamma=2, temperature=0.7, top_k=5),
        SpecOptions(method="tree", accept="sample", tree_depth=2, tree_topk=3, tree_budget=6, temperature=1.0),
        SpecOptions(method="lookup", accept="sample", gamma=2, temperature=1.0),
    ],
    ids=["chain", "chain-topk", "tree", "lookup"],
)
def test_speculative_sampling_preserves_target_distribution(opt):
    """≥ 10k draws of the first new token on a fixed context: the distribution is the target's (χ², p > 1e-3)."""
    target, draft = tiny_lm(5, vocab=12, hidden=16, layers=1, std=0.6), tiny_lm(6, vocab=12, hidden=16, layers=1)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 3, 1, 4]  # "3 1 4" repeats, so prompt lookup proposes "1 5"
    opt.detail, opt.seed = False, 1  # any seed: the test is exact in distribution, seeded to be reproducible
    spec = Speculator(target, draft, prompt, 3, opt)
    with torch.inference_mode():
        p = next_token_probs(target.model(torch.tensor([prompt]))[0, -1], opt.temperature, opt.top_k).double().numpy()
    n, counts, rejected = 10_000, np.zeros(12), 0
    for _ in range(n):
        record = spec.step()
        counts[record.new_tokens[0]] += 1
        rejected += record.rejected is not None and not record.accepted
        spec.rewind(len(prompt))
    assert 0 < rejected < n  # both branches (accept, residual) were exercised
    assert chi2_pvalue(counts, p) > 1e-3


def test_typical_acceptance_follows_its_formula(random_pair):
    """Every decision, recomputed from a fresh target forward: accept x iff p(x) > min(ε, δ·exp(−H(p)))."""
    target, draft = random_pair
    opt = SpecOptions(method="tree", accept="typical", temperature=0.7, tree_depth=3, tree_topk=3, tree_budget=10)
    context = list(range(20, 32))
    n_decisions = n_accepted = 0
    for record in speculate(target, draft, context, 24, opt):
        tree = record.tree
        for d in record.decisions:
            path, j = [], int(tree.parent[d.node])
            while j >= 0:
                path.append(int(tree.tokens[j]))
                j = int(tree.parent[j])
            with torch.inference_mode():
                logits = target.model(torch.tensor([context + path[::-1]]))[0, -1]
            p = next_token_probs(logits, 0.7, None).double()
            threshold = min(0.09, 0.3 * math.exp(-float(-(p * p.log()).sum())))
            px = float(p[d.token])
            assert d.ratio == pytest.approx(threshold, rel=1e-4)
            if abs(px - threshold) > 1e-5:
                assert d.accepted == (px > threshold)
            n_decisions += 1
            n_accepted += d.accepted
        context += record.new_tokens
    assert n_decisions > n_accepted > 0


def test_typical_threshold_uses_target_entropy(random_pair):
    target, draft = random_pair
    opt = SpecOptions(accept="typical", temperature=0.7, gamma=3)
    prompt = list(range(40, 50))
    spec = Speculator(target, draft, prompt, 10, opt)
    record = spec.step()
    with torch.inference_mode():
        p = next_token_probs(target.model(torch.tensor([prompt]))[0, -1], 0.7, None)
    h = float(-(p * p.log()).sum())
    first = record.decisions[0]
    assert first.entropy == pytest.approx(h, rel=1e-4)
    assert first.p == pytest.approx(float(p[first.token]), rel=1e-4)


def test_mismatched_tokenizers_are_refused(pair):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    target, draft = pair
    other = LoadedModel(draft.model, Tokenizer(WordLevel({"a": 0, "b": 1}, unk_token="a")), draft.config,
                        Path("other-draft"), (), None)  # fmt: skip
    with pytest.raises(ExplorerError, match="different tokenizers"):
        Speculator(target, other, target.encode("x = 1"), 8)


def test_padded_vocab_with_same_tokenizer_is_accepted(pair):
    """Sizes differ (4096 vs 4160, padding) but the tokenizer is the same: accepted, compared on the common part."""
    tok = pair[0].tokenizer
    target, padded = tiny_lm(7, vocab=4096, tokenizer=tok), tiny_lm(8, vocab=4160, hidden=16, layers=1, tokenizer=tok)
    ids = target.encode(PROMPTS[0])
    for opt in (SpecOptions(gamma=3), SpecOptions(method="tree", tree_depth=3, tree_topk=2)):
        result = run_speculation(target, padded, ids, 20, opt, compare=False)
        assert result.token_ids == generate(target, ids, 20)
    sampled = run_speculation(target, padded, ids, 20, SpecOptions(accept="sample", temperature=1.0), compare=False)
    assert max(sampled.token_ids) < 4096


def test_records_and_stats(pair):
    target, draft = pair
    ids = target.encode(PROMPTS[0])
    result = run_speculation(target, draft, ids, 32, SpecOptions(method="tree", tree_depth=3, tree_topk=2))
    s = result.stats
    assert s["first_divergence"] is None and s["speedup"] > 0 and 0 <= s["alpha"] <= 1
    assert s["mean_accepted_with_bonus"] == pytest.approx(s["mean_accepted_without_bonus"] + 1)
    step = result.steps[0].as_dict()
    assert len(step["tree"]["texts"]) == len(step["tree"]["tokens"]) and step["decisions"]
    origins = [o for r in result.steps for o in r.origins]
    assert len(origins) == len(result.token_ids) and set(origins) <= {"accepted", "corrected", "bonus"}
    # each step's target forward is timed apart from its bookkeeping, which the cost model adds per step
    assert all(0 < r.forward_seconds < r.verify_seconds for r in result.steps)
    assert s["bookkeeping_seconds"] == pytest.approx(sum(r.verify_seconds - r.forward_seconds for r in result.steps))
    assert "forward_seconds" in step


def test_helpers():
    assert lookup_continuation([1, 2, 3, 9, 1, 2, 3], 3, 4) == [9, 1, 2, 3]
    assert lookup_continuation([1, 2, 3], 3, 4) == []
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert theoretical_speedup(0.8, 5, 0.05) == pytest.approx(2.95, abs=0.01)  # ANCHORS' worked example


def test_the_lookup_match_is_kept_per_context_and_forgotten_on_rewind(random_pair):
    """Lookup first asks for the match to choose a drafter, then lookup drafts from it: one scan per context. A
    rewind changes the context under an equal length, so it must not answer from before."""
    target, _ = random_pair
    spec = Speculator(target, None, [5, 6, 7, 9, 5, 6, 7], 8, SpecOptions(method="lookup", detail=False))
    assert spec.lookup_match(3) == lookup_match(spec.context, 3) == (3, 3)
    spec.context.append(9)
    assert spec.lookup_match(3) == (3, 4)  # a longer context: scanned again (5 6 7 9 came before)
    spec.rewind(7)
    spec.context.append(8)  # the same length as before the rewind, another last token
    assert spec.lookup_match(3) == lookup_match(spec.context, 3) == (0, 0)


def test_a_chain_step_costs_gamma_draft_forwards(pair):
    """No separate cache-sync forward: after a fully accepted chain the draft catches up on the last draft token in
    the next step's first forward (together with the new root), so drafting γ tokens takes exactly γ forwards."""
    target, draft = pair
    ids = target.encode(PROMPTS[0])
    steps = run_speculation(target, draft, ids, 48, SpecOptions(gamma=3, detail=False), compare=False).steps
    assert any(s.rejected is None for s in steps[:-1])  # some step accepted its whole chain
    for s in steps:
        assert s.draft_calls == len(s.tree.tokens)


def test_where_it_pays_counts_verification_drafting_and_bookkeeping():
    """Break-even tokens per step = (verify n nodes on the measured curve + drafting + bookkeeping) per step over
    one decode step; the model's speedup is the measured tokens per step over it."""
    from explorer.speculative.costs import alpha_for, chain_tokens, where_it_pays

    curve = {"sizes": [1, 2, 3, 4], "base_seconds": 0.010, "chain_seconds": [0.011, 0.012, 0.013, 0.014],
             "tree_seconds": [0.011, 0.013, 0.015, 0.017]}  # fmt: skip
    stats = {"steps": 10, "drafted": 30, "draft_seconds": 0.03, "bookkeeping_seconds": 0.01, "depth": 3,
             "mean_accepted_with_bonus": 2.5}  # fmt: skip
    pays = where_it_pays(curve, stats, tree=False)
    assert pays["nodes_per_step"] == 3 and pays["verify_ms_per_step"] == pytest.approx(13.0) and not pays["tree"]
    assert pays["bookkeeping_ms_per_step"] == pytest.approx(1.0) and pays["draft_cost_per_token"] == pytest.approx(0.1)
    assert pays["break_even_tokens_per_step"] == pytest.approx((13 + 3 + 1) / 10)
    assert pays["model_speedup"] == pytest.approx(2.5 / 1.7)
    assert chain_tokens(pays["break_even_alpha"], 3) == pytest.approx(1.7, abs=1e-6)
    assert where_it_pays(curve, stats, tree=True)["verify_ms_per_step"] == pytest.approx(15.0)
    assert alpha_for(5.0, 3) is None  # more than depth + 1 tokens per step: no α gives it


TIMINGS = ("draft_seconds", "verify_seconds", "forward_seconds")


def _untimed(record) -> dict:
    return {k: v for k, v in record.as_dict().items() if k not in TIMINGS}


def test_speculation_job_is_the_baseline_then_speculation_then_costs(pair):
    from explorer.jobs import run_job
    from explorer.session import Session
    from explorer.speculative.job import SpecRunMeta

    target, draft = pair
    session = Session(target=target, draft=draft, prompt=PROMPTS[0])
    values = dict(method="tree", accept="sample", gamma=3, temperature=0.0, seed=3, tree_depth=3, tree_topk=2,
                  tree_budget=6, max_new=12)  # fmt: skip
    job = run_job("speculative", session, values, deterministic=True)
    meta = job.meta
    assert isinstance(meta, SpecRunMeta) and meta.target_only is None
    assert meta.options.temperature == 1.0  # sample acceptance needs a distribution: the effective options
    records = list(job.records())
    ids = session.prompt_ids()
    opt = SpecOptions(method="tree", accept="sample", temperature=1.0, seed=3, tree_depth=3, tree_topk=2,
                      tree_budget=6)  # fmt: skip
    expected = list(speculate(target, draft, ids, 12, opt))
    assert [_untimed(r) for r in records] == [_untimed(r) for r in expected]
    assert meta.target_only.tokens == generate(target, ids, 12, 1.0, None, 3)
    assert "costs" not in meta.as_dict() and meta.costs is None  # a recording measures nothing

    curves: dict = {}
    from explorer.speculative.job import speculation_job

    greedy = dict(values, accept="greedy", max_new=8)
    job = speculation_job(session, greedy, curves=curves)
    assert job.meta.as_dict()["costs"] is None  # measured when the run ends
    steps = list(job.records())
    assert job.meta.target_only.tokens == [t for s in steps for t in s.new_tokens]
    assert job.meta.costs["tree"] == any(s.mask is not None for s in steps) and len(curves) == 1
    d = job.meta.as_dict()
    assert list(d) == ["target", "draft", "prompt", "prompt_ids", "options", "costs", "target_only"]
    assert SpecRunMeta.from_dict(d) == job.meta


def test_the_views_speed_is_timed_once_the_steps_are_out(pair, monkeypatch):
    """While a run streams its steps the view draws them on the GUI thread, which slows the speculative side alone
    (the demo's EAGLE read 0.79x in the view, 1.18-1.27x in explorer speculate): both sides are timed as explorer
    speculate times them, alternated pairs after the steps are out, and the pair of median speedup gives both
    seconds (one pair swung 0.71-1.10x on a noisy machine); the baseline keeps its tokens."""
    from explorer.speculative import job as spec_job
    from explorer.speculative.job import quiet_timing

    target, draft = pair
    ids = target.encode(PROMPTS[0])
    opt = SpecOptions(method="chain", gamma=2)
    slow = TargetOnly([1, 2, 3], 60.0)  # as if timed while the view drew
    base, seconds = quiet_timing(target, draft, ids, 8, opt, None, slow, pairs=1)
    assert base.tokens == [1, 2, 3] and 0 < base.seconds < 60.0 and 0 < seconds < 60.0
    timed = [(1.0, 2.0), (1.0, 0.5), (1.2, 1.0)]  # speedups 0.5, 2.0 and 1.2: the median pair is the third
    monkeypatch.setattr(spec_job, "timed_pairs", lambda *args: timed)
    base, seconds = quiet_timing(target, draft, ids, 8, opt, None, slow)
    assert (base.seconds, seconds) == (1.2, 1.0) and base.tokens == [1, 2, 3]


def test_run_metadata_reads_files_written_before():
    from explorer.speculative.job import META_VERSION, SpecRunMeta

    old = {"view": "speculative", "target": "t", "draft": None, "prompt": "p", "prompt_ids": [1, 2],
           "options": {"method": "medusa", "accept": "typical", "retired_option": 1},
           "costs": {"model_speedup": 1.5}, "steps": []}  # fmt: skip
    meta = SpecRunMeta.from_dict(old, decode=str)
    assert meta.version == META_VERSION and meta.target_only is None and meta.decode is str
    assert meta.options == SpecOptions(method="medusa", accept="typical")
    assert meta.costs == {"model_speedup": 1.5, "tree": True}  # saved before costs named their curve: by method
    bare = SpecRunMeta.from_dict({"prompt_ids": [5], "target_only": {"tokens": [7], "seconds": 0.5}})
    assert bare.target_only.tokens == [7] and not bare.measures_costs and "costs" not in bare.as_dict()
    with pytest.raises(ExplorerError, match="version 2"):
        SpecRunMeta.from_dict({"version": 2})
