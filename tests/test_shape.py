"""The draft-shape chooser (explorer/speculative/shape.py): a flat (GPU-like) cost curve gets a wider, deeper tree
than a climbing (CPU-like) one, acceptance 0 gets no speculation, every choice keeps greedy token-identical to
plain greedy and speculative sampling lossless (χ²), the curve's cache is JSON keyed by what it depends on."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_speculative import chi2_pvalue, tiny_lm

from explorer.models.checkpoint import default_head_dirs, default_model_dirs, load_model
from explorer.models.generate import generate, next_token_probs
from explorer.speculative import shape
from explorer.speculative.engine import Speculator, TimedSpeculation
from explorer.speculative.heads import load_heads
from explorer.speculative.lookup_first import AFTER_LOOKUP, LOOKUP_RETRY_EVERY, LookupFirst
from explorer.speculative.records import SpecOptions
from explorer.speculative.shape import (
    NO_SPECULATION,
    Acceptance,
    Costs,
    ShapeChooser,
    best,
    candidates,
    flat_curve,
)

DIRS = default_model_dirs()
AUTO = dict(gamma=0, tree_depth=0, tree_topk=0, tree_budget=0, medusa_tree="")
BASE = 0.005  # seconds of one decode step in the synthetic curves
GPU = flat_curve(BASE, 0.0)  # verifying 32 tokens costs one step
CPU = flat_curve(BASE, 0.12)  # each verified token adds 12% of a step (about this CPU's demo target)


def acceptance(rank0: float, rest: float = 0.08) -> np.ndarray:
    table = np.full((shape.MAX_DEPTH, shape.RANKS), rest)
    table[:, 0] = rank0
    return table


def costs(curve: dict, draft: float = 0.05) -> Costs:
    return Costs(curve, draft * BASE, 1.3 * draft * BASE, overhead=0.05 * BASE, overhead_nodes=4)


@pytest.mark.parametrize("method", ["eagle", "tree"])
def test_a_flat_curve_gets_a_wider_deeper_tree_than_this_cpus(method):
    acc = acceptance(0.7, 0.1)
    flat = best(candidates(method, acc, costs(GPU), {}), costs(GPU)).shape
    steep = best(candidates(method, acc, costs(CPU), {}), costs(CPU)).shape
    assert flat.topk > steep.topk and flat.depth >= steep.depth and flat.nodes > steep.nodes, (flat, steep)
    assert flat.tree and flat.nodes >= 8


def test_a_flat_curve_gets_a_bigger_medusa_tree_and_a_longer_chain():
    acc = acceptance(0.6, 0.1)
    gpu = best(shape.medusa_candidates(acc, costs(GPU), 4), costs(GPU)).shape
    cpu = best(shape.medusa_candidates(acc, costs(CPU), 4), costs(CPU)).shape
    assert gpu.nodes > cpu.nodes and gpu.tree
    gpu = best(candidates("chain", acc, costs(GPU, 0.02), {}), costs(GPU, 0.02)).shape
    cpu = best(candidates("chain", acc, costs(CPU, 0.02), {}), costs(CPU, 0.02)).shape
    assert gpu.depth > cpu.depth >= 1


def test_medusa_candidates_stop_where_no_longer_prefix_can_win_and_keep_the_best():
    """Grown only while a longer prefix could still beat the best so far: a few on this CPU's curve, all 32 on a
    flat one, and the chosen tree the same as with every prefix grown."""
    acc = acceptance(0.4, 0.05)
    steep, flat = shape.medusa_candidates(acc, costs(CPU), 4), shape.medusa_candidates(acc, costs(GPU), 4)
    assert len(steep) < 10 and len(flat) == shape.MAX_NODES
    for cands in (steep, flat):
        assert [c.shape.nodes for c in cands] == list(range(1, len(cands) + 1))
    grown = []  # every prefix, from the flat curve's order (the same order: it depends on acceptance alone)
    for c in flat:
        seconds = float(costs(CPU).step(c.shape.nodes, 1, c.shape.tree))
        grown.append(shape.Candidate(c.shape, c.tokens, seconds))
    assert best(steep, costs(CPU)).shape == best(grown, costs(CPU)).shape


def test_the_runs_own_forwards_shift_the_curve_by_their_difference():
    """A run's forward at 1 node, 1.5 ms over the curve, moves every node count by 1.5 ms (the cold weights'
    cost, the same at any count), not by the ratio; two counts seen: interpolated between them, held beyond."""
    c = costs(CPU)
    curve = c.verify(np.arange(9), False).copy()
    c.observed[(1, False)] = curve[1] + 0.0015
    np.testing.assert_allclose(c.verify(np.arange(9), False), curve + 0.0015)
    c.observed[(5, False)] = curve[5] + 0.0005
    shifted = c.verify(np.arange(9), False)
    np.testing.assert_allclose(shifted[[0, 1, 3, 5, 8]] - curve[[0, 1, 3, 5, 8]], [0.0015, 0.0015, 0.001, 0.0005,
                                                                                   0.0005])  # fmt: skip


@pytest.mark.parametrize("method", ["chain", "tree", "eagle", "medusa", "mtp", "lookup"])
def test_acceptance_zero_means_no_speculation(method):
    zero = acceptance(0.0, 0.0)
    for curve in (GPU, CPU):
        chosen = best(candidates(method, zero, costs(curve), {}, max_depth=4), costs(curve))
        assert chosen.shape == NO_SPECULATION and chosen.tokens == 1.0


def test_explicit_dimensions_win():
    acc = acceptance(0.7, 0.1)
    chosen = best(candidates("eagle", acc, costs(GPU), {"depth": 2}), costs(GPU)).shape
    assert chosen.depth == 2 and chosen.topk > 1
    chosen = best(candidates("eagle", acc, costs(GPU), {"topk": 1, "budget": 3}), costs(GPU)).shape
    assert chosen.topk == 1 and chosen.budget == 3
    assert shape.fixed_dims(SpecOptions(method="eagle", tree_depth=3, tree_topk=1, tree_budget=3)) is None
    assert shape.fixed_dims(SpecOptions(method="eagle", tree_depth=3, tree_topk=0, tree_budget=0)) == {"depth": 3}
    assert shape.fixed_dims(SpecOptions(method="medusa", medusa_tree="tuned")) is None


def test_rejections_online_fall_back_to_plain_decoding_once():
    """A draft whose every candidate is rejected: the chooser drops to plain decoding, says so once, and probes."""
    chooser = ShapeChooser("chain", costs(CPU), Acceptance(acceptance(0.9)), timing=False)
    assert chooser.shape_for(0)[0].depth >= 2
    for step in range(1, 40):
        chooser.acceptance.observe_decision(1, 0, False)
        chooser.acceptance.observe_confidence(1, [0.9, 0.05, 0.02, 0.01])
        chooser.shape_for(step)
    assert chooser.current.shape == NO_SPECULATION
    assert "no draft shape is expected to pay" in chooser.fallback_note
    assert [c["to"] for c in chooser.changes].count("no speculation") == 1


def test_rejected_probes_come_ever_less_often_and_an_accepted_one_is_weighed_at_once():
    """After a fallback the first probe comes at plain step 2; each rejected one doubles the wait (4, 8, 16, then
    32 at most); an accepted probe makes the next step a choice."""
    chooser = ShapeChooser("chain", costs(CPU), Acceptance(acceptance(0.0)), timing=False)
    for _ in range(shape.FALLBACK_AFTER):
        chooser.acceptance.observe_decision(1, 0, False)
    probes = []
    for step in range(120):
        s, probe = chooser.shape_for(step)
        if probe:
            probes.append(chooser._plain_steps)
            chooser.probe_result(False)
        else:
            assert s == NO_SPECULATION
    assert probes == [2, 6, 14, 30, 62, 94]
    chosen = len(chooser._cands)
    chooser.probe_result(True)
    chooser._cands = []
    chooser.shape_for(120)
    assert chooser._cands  # a choice was made
    assert chosen


def test_an_accepted_probe_drafts_again_for_a_few_decisions_of_its_own():
    """Acceptance moves within a run: after a fallback an accepted probe brings back the cheapest shape (without
    the switching margin) until FALLBACK_AFTER new decisions at depth 1 say it does not pay."""
    chooser = ShapeChooser("chain", costs(CPU), Acceptance(acceptance(0.0)), timing=False)
    for _ in range(shape.FALLBACK_SURE):
        chooser.acceptance.observe_decision(1, 0, False)
    step = 0
    while not chooser.shape_for(step)[1]:  # plain steps up to the first probe
        step += 1
    assert chooser.current.shape == NO_SPECULATION
    chooser.acceptance.observe_decision(1, 0, True)
    chooser.probe_result(True)
    again = [chooser.shape_for(step + 1 + i)[0] for i in range(shape.FALLBACK_AFTER)]
    assert all(s.depth == 1 for s in again), again
    for _ in range(shape.FALLBACK_AFTER):
        chooser.acceptance.observe_decision(1, 0, False)
    chooser._misses = shape.RECHOOSE_AFTER_MISSES  # (as observe() counts them)
    assert chooser.shape_for(step + 1 + shape.FALLBACK_AFTER)[0] == NO_SPECULATION


def test_decisions_fade_and_recalled_ones_are_not_the_runs_own():
    """Fading keeps a share of the counts so far (each plain step DECISIONS_KEEP); the next run recalls the last
    one's timings and (weighed down) its acceptance, which does not count as its own evidence before a fallback."""
    acc = Acceptance(acceptance(0.5))
    acc.observe_decision(1, 0, False)
    acc.fade(0.5)
    assert acc.tried[0, 0] == 0.5 and acc.decided == 1
    first = ShapeChooser("chain", costs(CPU), Acceptance(acceptance(0.5)), memory_key=("test", 1))
    for _ in range(10):
        first.acceptance.observe_decision(1, 0, False)
    first._note("draft_forward", 0.123)
    first.remember()
    nxt = ShapeChooser("chain", costs(CPU), Acceptance(acceptance(0.0)), memory_key=("test", 1))
    nxt.recall()
    assert nxt.acceptance.tried[0, 0] == shape.RECALL_CAP and nxt.acceptance.decided == 0
    assert nxt._timings["draft_forward"][-1][1] == 0.123
    assert nxt.shape_for(0)[0].depth == 1  # nothing expected to pay, but no decision of its own yet: it drafts


def drafting_chooser():
    """A chain chooser that chose a chain of 2 or more, and plain decoding's candidate."""
    chooser = ShapeChooser("chain", costs(CPU), Acceptance(acceptance(0.9)), timing=False)
    chooser.shape_for(0)
    assert chooser.current.shape.depth >= 2
    return chooser, shape.plain(chooser.costs)


def expect(chooser, current, other) -> None:
    """Make the chooser's next choice see ``current`` (the shape in use) against ``other`` (its best candidate)."""
    chooser.current = current
    chooser._expected = lambda s, cands: current if s == current.shape else other
    chooser.evaluate = lambda: (other, [current, other])


def test_a_shape_that_no_longer_pays_is_left_without_the_switching_margin():
    """SWITCH_GAIN keeps a shape against a slightly better one, not against plain decoding once the shape is
    expected slower than it: a chain that became 5% slower than plain (within the 8% margin) gives way at once."""
    chooser, alone = drafting_chooser()
    drafting = chooser.current
    # the current shape's expected rate falls to 95% of plain decoding's
    slower = shape.Candidate(drafting.shape, 0.95 * alone.rate() * drafting.seconds, drafting.seconds)
    expect(chooser, slower, alone)
    chooser._choose(8)
    assert chooser.current.shape == NO_SPECULATION
    kept = shape.Candidate(drafting.shape, 1.05 * alone.rate() * drafting.seconds, drafting.seconds)
    # one that still pays (5% over plain) stays against a 7% better shape
    expect(chooser, kept, shape.Candidate(shape.chain_shape(drafting.shape.depth + 1), 1.07 * kept.tokens,
                                          kept.seconds))  # fmt: skip
    chooser._choose(16)
    assert chooser.current.shape == kept.shape


def test_a_paying_shape_is_not_cut_shallower_on_a_few_early_decisions():
    """A prompt's first tokens are its hardest: until FALLBACK_SURE decisions at depth 1 of its own, a shape that
    still pays is kept against a shallower one, however much better the early misses make that one look; with
    enough decisions the shallower one is taken."""
    chooser, alone = drafting_chooser()
    deep = chooser.current
    paying = shape.Candidate(deep.shape, 1.2 * alone.rate() * deep.seconds, deep.seconds)
    expect(chooser, paying, shape.Candidate(shape.chain_shape(1), 1.5 * alone.rate() * deep.seconds, deep.seconds))
    for _ in range(shape.FALLBACK_SURE - 1):
        chooser.acceptance.observe_decision(1, 0, False)
    chooser._choose(4)
    assert chooser.current.shape == deep.shape
    chooser.acceptance.observe_decision(1, 0, False)
    chooser._choose(8)
    assert chooser.current.shape == shape.chain_shape(1)


def test_an_undecided_deeper_level_is_explored_at_the_rate_of_the_level_above():
    """One level deeper than the choice is explored where it may pay. A level with few decisions is weighed at the
    rate of the level above it: with depth 2 guessed at 0.05 from no decisions a chain of 2 is still explored, while
    with KNOWN_DECISIONS of them at that rate it is not (two early rejections had kept EAGLE at a chain of 1)."""
    table = acceptance(0.8)
    table[1:, 0] = 0.05
    chooser = ShapeChooser("chain", costs(CPU), Acceptance(table), max_depth=4, timing=False)
    chooser.shape_for(0)
    assert chooser.current.shape == shape.chain_shape(1)
    assert chooser._explore == shape.chain_shape(2)
    known = ShapeChooser("chain", costs(CPU), Acceptance(table), max_depth=4, timing=False)
    known.acceptance.tried[:, 0] = shape.KNOWN_DECISIONS
    known.acceptance.accepted[0, 0] = 0.8 * shape.KNOWN_DECISIONS
    known.acceptance.accepted[1:, 0] = 0.05 * shape.KNOWN_DECISIONS
    known.shape_for(0)
    assert known.current.shape == shape.chain_shape(1)
    assert known._explore is None


@pytest.mark.parametrize("method", ["eagle", "medusa"])
def test_the_current_shape_is_weighed_where_the_candidates_leave_it_out(method):
    """A tree's candidates are each depth and width's best budget (Medusa's, prefixes of a best-first order): after
    the acceptance moves, the current shape may be none of them. It is then weighed from the table, not read as
    plain decoding (1.00x), which had dropped EAGLE's chain of 3 for a chain of 1 at its next choice."""
    chooser = ShapeChooser(method, costs(CPU), Acceptance(acceptance(0.8)), timing=False)
    chooser.shape_for(0)
    cur = chooser.current
    assert cur.shape.depth >= 2
    others = [c for c in chooser._cands if c.shape != cur.shape]
    again = chooser._expected(cur.shape, others)
    assert again.shape == cur.shape
    assert again.tokens == pytest.approx(cur.tokens) and again.seconds == pytest.approx(cur.seconds)
    chooser.evaluate = lambda: (max(others, key=shape.Candidate.rate), others)
    chooser._choose(8)
    assert chooser.current.shape == cur.shape  # kept: the others are not expected SWITCH_GAIN faster
    assert not chooser.changes[1:]


# ---------------------------------------------------------------------------------------------- the engine
@pytest.fixture(scope="module")
def demo():
    target = load_model(DIRS["target"], dtype="float32", device="cpu")
    draft = load_model(DIRS["draft"], dtype="float32", device="cpu")
    heads = {kind: load_heads(path, target) for kind, path in default_head_dirs().items() if path.is_dir()}
    return target, draft, heads


@pytest.mark.parametrize("method", ["chain", "tree", "eagle", "medusa", "mtp", "lookup"])
def test_greedy_stays_token_identical_with_every_choice(demo, method):
    """Flat, climbing and prohibitive curves (no speculation) all decode exactly the target's greedy tokens."""
    target, draft, heads = demo
    prompt = "def read_config(path):\n    with open(path) as f:\n        "
    ids = target.encode(prompt)
    want = generate(target, ids, 16)
    steep = flat_curve(BASE, 3.0)  # one more token costs 3 steps: nothing pays
    labels = set()
    for curve in (GPU, CPU, steep):
        opt = SpecOptions(method=method, detail=False, **AUTO)
        spec = Speculator(target, None if method in ("lookup", "medusa", "eagle", "mtp") else draft, ids, 16, opt,
                          heads.get(method if method != "lookup" else "mtp"), curve=curve, timing=False)  # fmt: skip
        records = []
        while not spec.done:
            records.append(spec.step())
        assert spec.new_tokens == want, (method, curve["chain_seconds"][-1])
        assert all(r.shape is not None for r in records)
        labels |= {r.shape["label"] for r in records}
        if curve is steep:
            assert spec.chooser.fallback_note is not None
            # (the first steps draft the cheapest shape until depth 1 has FALLBACK_AFTER decisions)
            assert not any(len(r.tree.tokens) for r in records[shape.FALLBACK_AFTER + 1 :] if not r.shape["probe"])
    assert "no speculation" in labels and len(labels) >= 2, labels


def test_heads_drafting_after_lookup_remember_apart_from_the_heads_own_runs(demo, monkeypatch):
    """Lookup first drafts with the heads only where lookup found nothing (text the heads accept less): what its
    heads chooser learnt is kept under its own key, and an EAGLE run of the same heads recalls none of it."""
    target, _, heads = demo
    monkeypatch.setattr(shape, "_MEMORY", {})
    ids = target.encode("def read_config(path):\n    with open(path) as f:\n        ")
    TimedSpeculation(target, None, ids, 12, SpecOptions(method="lookup", detail=False, **AUTO), heads["eagle"],
                     curve=CPU).run()  # fmt: skip
    tags = {key[1:2] + key[-1:] for key in shape._MEMORY}
    assert ("eagle", AFTER_LOOKUP) in tags and ("eagle", "") not in tags, tags
    spec = Speculator(target, None, ids, 4, SpecOptions(method="eagle", detail=False, **AUTO), heads["eagle"],
                      curve=CPU)  # fmt: skip
    assert spec.chooser.acceptance.tried.sum() == 0 and not spec.chooser._timings


@pytest.mark.parametrize("method,accept", [("chain", "sample"), ("medusa", "typical"), ("eagle", "greedy")])
def test_steps_that_draft_nothing_decode_as_the_target_alone(demo, monkeypatch, method, accept):
    """The fallback is plain decoding, draw for draw: sampled at temperature 0.8 / top-k 20 with one seed, a run
    whose every step drafts nothing gives the target alone's tokens (it uses the random generator as it does)."""
    target, draft, heads = demo
    monkeypatch.setattr(ShapeChooser, "shape_for", lambda self, step: (NO_SPECULATION, False))
    ids = target.encode("The three laws of motion are")
    sampled = accept != "greedy"
    temperature = 0.8 if sampled else 0.0
    opt = SpecOptions(method=method, accept=accept, temperature=temperature, top_k=20 if sampled else None, seed=7,
                      detail=True, stop_at_eos=False, **AUTO)  # fmt: skip
    spec = Speculator(target, draft if method == "chain" else None, ids, 20, opt, heads.get(method), timing=False)
    records = []
    while not spec.done:
        records.append(spec.step())
    want = generate(target, ids, 20, temperature, 20 if sampled else None, seed=7, stop_at_eos=False)
    assert spec.new_tokens == want and len(records) == 20
    assert all(r.origins == ["bonus"] and not len(r.tree.tokens) and r.draft_calls == 0 for r in records)
    assert [r.context_len for r in records] == list(range(len(ids), len(ids) + 20))
    assert all(r.target_slots_kept == [r.context_len - 1] for r in records)
    assert (records[0].tree.source is not None) == (method != "chain")


def test_report_names_the_shape_and_its_neighbours(demo, monkeypatch):
    target, _, heads = demo
    monkeypatch.setitem(shape._CURVES, shape.curve_key(target), {**CPU, "key": "test", "cached": True})
    ids = target.encode("import os\n\n\ndef main():\n    ")
    run = TimedSpeculation(target, None, ids, 24, SpecOptions(method="eagle", detail=False, **AUTO), heads["eagle"])
    run.run()
    report = run.shape
    assert report["mode"] == "auto" and report["shape"]["depth"] >= 0
    assert set(report["neighbours"]) == {"chosen", "deeper", "wider", "chain", "no speculation"}
    assert report["neighbours"]["no speculation"]["expected_tokens_per_step"] == 1.0
    assert report["changes"][0]["step"] == 1 and report["changes"][0]["reason"].startswith("first choice")
    assert run.new_tokens == generate(target, ids, 24)


@pytest.mark.parametrize("method", ["chain", "tree"])
def test_sampling_with_chosen_shapes_preserves_the_target_distribution(method):
    """2,500 draws of the first new token, the chooser adapting all along: the target's distribution (χ²)."""
    target, draft = tiny_lm(5, vocab=12, hidden=16, layers=1, std=0.6), tiny_lm(6, vocab=12, hidden=16, layers=1)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 3, 1, 4]
    opt = SpecOptions(method=method, accept="sample", temperature=1.0, detail=False, seed=2, **AUTO)
    spec = Speculator(target, draft, prompt, 3, opt, curve=GPU, timing=False)
    with torch.inference_mode():
        p = next_token_probs(target.model(torch.tensor([prompt]))[0, -1], 1.0, None).double().numpy()
    n, counts, shapes = 2500, np.zeros(12), set()
    for _ in range(n):
        record = spec.step()
        counts[record.new_tokens[0]] += 1
        shapes.add(record.shape["label"])
        spec.rewind(len(prompt))
    assert len(shapes) >= 2, shapes  # the chooser did adapt
    assert chi2_pvalue(counts, p) > 1e-3


def test_the_curve_is_cached_as_json_keyed_by_model_device_dtype_threads_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    monkeypatch.setattr(shape, "_CURVES", {})
    monkeypatch.setattr(shape, "APP_CURVE_SIZES", (1, 2, 4, 8))  # the test's curve: a few sizes, quickly
    target = tiny_lm(3)
    first = shape.curve_for(target)
    assert not first["cached"] and first["measured_seconds"] > 0 and first["rounds"] >= 4
    stored = json.loads((tmp_path / "verify-costs.json").read_text())
    key = shape.curve_key(target)
    assert stored["version"] == shape.CURVE_VERSION and list(stored["curves"]) == [key]
    for part in ("random-3", "cpu", "float32", f"threads={torch.get_num_threads()}", f"torch={torch.__version__}"):
        assert part in key
    curve = stored["curves"][key]
    assert np.all(np.diff(curve["chain_seconds"]) >= 0) and len(curve["tree_seconds"]) == len(curve["sizes"])
    monkeypatch.setattr(shape, "_CURVES", {})
    assert shape.curve_for(target)["cached"]  # read back, not measured
    again = shape.curve_for(target, remeasure=True)
    assert not again["cached"] and again["measured_at"] >= first["measured_at"]
    assert not list(tmp_path.glob(".*partial*"))


def test_the_view_words_say_what_was_chosen_and_where_it_changed():
    """describe's words for the header, the text marks and the where-it-pays caption, from a chooser's report."""
    from types import SimpleNamespace

    from explorer.speculative import describe

    chooser = ShapeChooser("eagle", costs(CPU), Acceptance(acceptance(0.8, 0.1)), timing=False)
    chooser.shape_for(0)
    report = chooser.report()
    caption = describe.choice_caption(report)
    assert caption.startswith(f"★ auto <b>{report['shape']['short']}</b>: ")
    assert f"{report['expected_speedup']:.2f}× expected (deeper " in caption and "no speculation" not in caption
    marks = describe.choice_marks(report)
    assert marks[0] == (report["shape"]["budget"], report["expected_tokens_per_step"]) and len(marks) >= 2
    fell = {**report, "fallback": "step 7: no draft shape is expected to pay on this machine (...)"}
    assert describe.choice_caption(fell).endswith("Plain decoding from step 7: no shape was expected to pay.")
    change = {"step": 5, "from": "chain of 3", "to": "chain of 2", "from_short": "chain 3", "to_short": "chain 2",
              "reason": "2.30 tok/step, 1.40× expected vs 2.10 tok/step, 1.20×"}  # fmt: skip
    steps = [SimpleNamespace(step=i, shape={"short": "chain 3" if i < 4 else "chain 2", "probe": False,
                                            "change": change if i == 4 else None}) for i in range(6)]  # fmt: skip
    assert describe.shape_changes(steps) == [(4, "chain 2")]
    assert describe.shape_text(steps[4]).startswith("shape (auto) → <b>chain 2</b>, was chain 3: 2.30 tok/step")
    assert describe.shape_text(steps[0]) == "shape (auto) chain 3 · "
    assert describe.method_note("auto: eagle, the heads expected to pay most here (eagle 1.86×, mtp 1.35×)") == (
        " (auto: eagle 1.86×, mtp 1.35×)"
    )
    first = "auto: prompt lookup first, else the eagle heads, expected to pay most here (eagle 1.86×, mtp 1.35×)"
    assert describe.method_note(first) == ", else eagle (auto: eagle 1.86×, mtp 1.35×)"
    assert describe.method_note(first.replace(")", ", medusa 1.01×)")) == ", else eagle (auto: eagle 1.86×, mtp 1.35×)"
    assert describe.shape_text(SimpleNamespace(shape={"short": "chain 2", "drafter": "lookup"})).startswith(
        "shape (auto, lookup) chain 2"
    )
    assert describe.choice_caption(None) == "" and describe.method_note(None) == ""


def test_speculate_json_says_which_method_and_shape_auto_chose(capsys, monkeypatch, tmp_path):
    """No flags: prompt lookup first, with the demo target's heads expected to pay most (with the figures) where
    it is not expected to pay more; the shape and its neighbours, and the steps each drafted."""
    from explorer.cli.main import main

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path))
    monkeypatch.setattr("explorer.speculative.shape._CURVES", {})  # not a curve an earlier test left in this process
    assert main(["speculate", "--max-new-tokens", "8", "--runs", "1", "--json", "--no-steps"]) == 0
    out = capsys.readouterr()
    stats = json.loads(out.out)["stats"]
    assert stats["method"] == "lookup"
    assert re.match(r"auto: prompt lookup first, else the (eagle|medusa|mtp) heads, expected to pay most here \(",
                    stats["method_choice"])  # fmt: skip
    kind = stats["method_choice"].split(" heads")[0].rsplit(" ", 1)[1]
    assert set(stats["shape"]["drafters"]["steps"]) == {"lookup", kind, "lookup 1-gram"}
    assert stats["shape"]["mode"] == "auto" and stats["shape"]["curve"]["cached"] is False
    assert {"deeper", "chain", "no speculation"} <= set(stats["shape"]["neighbours"])
    assert (tmp_path / "verify-costs.json").is_file()


class StubChooser:
    """A ShapeChooser's face: a fixed shape and expected rate; counts what it was asked and shown."""

    def __init__(self, method: str, shape, rate: float):
        self.method, self.shape, self.changes, self.fallback_note = method, shape, [], None
        self.current = SimpleNamespace(rate=lambda: rate, shape=shape)
        self.asked, self.seen = [], []
        self.max_nodes = 8

    def shape_for(self, step):
        self.asked.append(step)
        return self.shape, False

    def observe(self, draft, record):
        self.seen.append(record)


def test_lookup_first_drafts_with_the_drafter_expected_to_pay_more():
    """A continuation goes to lookup when its rate is at least the heads', else to the heads (and every
    LOOKUP_RETRY_EVERY-th skipped one to lookup anyway); a step without one always to the heads; each chooser
    observes only its own steps."""
    matched = [True]
    lookup, heads = StubChooser("lookup", shape.chain_shape(3), 2.0), StubChooser("eagle", shape.Shape(3, 2, 6), 1.0)
    both = LookupFirst(lookup, heads, lambda: matched[0])
    assert both.shape_for(0) == (shape.chain_shape(3), False) and both.method == "lookup"
    both.observe(None, "step 0")
    matched[0] = False
    assert both.shape_for(1) == (shape.Shape(3, 2, 6), False) and both.method == "eagle"
    both.observe(None, "step 1")
    assert lookup.seen == ["step 0"] and heads.seen == ["step 1"]
    matched[0] = True
    lookup.current = SimpleNamespace(rate=lambda: 0.5, shape=lookup.shape)  # the heads now pay more
    methods = []
    for step in range(2, 2 + 2 * LOOKUP_RETRY_EVERY + 2):
        both.shape_for(step)
        methods.append(both.method)
    assert methods.count("lookup") == 2 and methods[LOOKUP_RETRY_EVERY] == "lookup"
    assert both.steps == {"lookup": 3, "eagle": len(methods) - 1}
    assert heads.asked == list(range(len(heads.asked)))  # each chooser counts its own steps


def test_lookup_first_gives_one_token_matches_a_chooser_of_their_own():
    """After a one-token match the continuation is weighed by the 1-gram chooser (its own, lower, acceptance):
    the heads draft there, while a three-token match's continuation goes to lookup."""
    n = [3]
    lookup, heads = StubChooser("lookup", shape.chain_shape(3), 2.0), StubChooser("eagle", shape.Shape(3, 2, 6), 1.0)
    short = StubChooser("lookup", shape.chain_shape(1), 0.9)
    both = LookupFirst(lookup, heads, lambda: n[0], short)
    assert both.shape_for(0) == (shape.chain_shape(3), False) and both.method == "lookup"
    n[0] = 1
    assert both.shape_for(1) == (shape.Shape(3, 2, 6), False) and both.method == "eagle"
    both.observe(None, "step 1")
    assert short.asked == [0] and heads.seen == ["step 1"] and not short.seen
    short.current = SimpleNamespace(rate=lambda: 1.5, shape=short.shape)
    assert both.shape_for(2) == (shape.chain_shape(1), False) and both.method == "lookup"
    both.observe(None, "step 2")
    assert short.seen == ["step 2"] and not lookup.seen
    assert both.steps == {"lookup": 1, "eagle": 1, "lookup 1-gram": 1}


def test_lookup_with_heads_weighs_both_and_stays_token_identical(demo):
    """The demo target with its EAGLE heads on a prompt that repeats itself and then doesn't: both drafters draft,
    each step's note names its drafter, the report says how many each drafted, greedy equals the target's."""
    target, _, heads = demo
    prompt = "def add(a, b):\n    return a + b\n\n\ndef add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    "
    ids = target.encode(prompt)
    opt = SpecOptions(method="lookup", detail=False, **AUTO)
    spec = Speculator(target, None, ids, 32, opt, heads["eagle"], curve=CPU, timing=False)
    records = []
    while not spec.done:
        records.append(spec.step())
    assert spec.new_tokens == generate(target, ids, 32)
    drafters = {r.shape["drafter"] for r in records}
    assert drafters == {"lookup", "eagle"}, drafters
    report = spec.chooser.report()
    assert sum(report["drafters"]["steps"].values()) == len(records)
    assert report["lookup"]["mode"] == "auto" and report["shape"]["depth"] >= 0
