"""explorer.speculative.describe: the speculative view's words and figures, tested without a display."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from explorer.speculative import describe
from explorer.speculative.records import Decision, DraftTree, SpecOptions, StepRecord, TargetOnly
from explorer.speculative.stats import compute_stats

PALETTE = SimpleNamespace(text="#111", muted="#777", accent="#e45", bar="#47a", highlight_bg="#fdc")
TEXTS = {1: "a", 2: "b", 3: "c", 4: "d", 5: "e", 6: "f", 7: " word", 8: "!", 9: " Ad", 10: "ditional"}


def decode(ids):
    return "".join(TEXTS.get(int(i), "?") for i in ids)


def _decision(node, token, accepted, p=0.5, q=0.4, u=None, ratio=1.0, entropy=None):
    return Decision(node, token, p, q, ratio, u, accepted, entropy, np.array([token, 6]), np.array([p, 0.1]),
                    np.array([token, 5]), np.array([q, 0.2]))  # fmt: skip


def step(i=0, accepted=(0,), rejected=2, decisions=None, new=(1, 3), origins=("accepted", "corrected"), bonus=None,
         seconds=(0.01, 0.02), source=None):  # fmt: skip
    """A tree of 4 nodes: 0 and 1 under the root, 2 under 0, 3 under 1 (drafting order)."""
    tree = DraftTree(np.array([1, 2, 3, 4]), np.array([-1, -1, 0, 1]), np.array([1, 1, 2, 2]),
                     np.array([0.6, 0.3, 0.5, 0.2], np.float32), ["a", "b", "c", "d"], source)  # fmt: skip
    if decisions is None:
        decisions = [_decision(0, 1, True), _decision(2, 3, False)]
    return StepRecord(
        step=i, context_len=3, root_token=7, tree=tree, p=np.array([0.7, 0.1, 0.2, 0.05], np.float32),
        target_argmax=np.zeros(5, np.int64), mask=None, position_ids=np.array([2, 3, 3, 4, 4]),
        decisions=decisions, accepted=list(accepted), rejected=rejected, residual_top_ids=np.array([5, 6]),
        residual_top_probs=np.array([0.6, 0.4]), residual_token=5 if rejected is not None else None,
        bonus_token=bonus, new_tokens=list(new), origins=list(origins), target_slots_verified=8,
        target_slots_kept=[3, 4], draft_slots_kept=[3], draft_calls=2, draft_seconds=seconds[0],
        verify_seconds=seconds[1],
    )  # fmt: skip


STEPS = [step(0), step(1, accepted=(0, 2), rejected=None, new=(1, 3, 8), origins=("accepted",) * 2 + ("bonus",),
                     bonus=8, decisions=[_decision(0, 1, True), _decision(2, 3, True)])]  # fmt: skip


def test_progress_is_compute_stats_over_the_steps_so_far():
    options = SpecOptions(method="tree")
    stats = describe.progress(STEPS, options)
    expected = compute_stats(STEPS, 5, 0.06, options, [1, 2, 3, 4, 5], 0.1)
    assert stats["alpha"] == expected["alpha"] == 3 / 4  # 3 accepted of 4 decided positions
    assert stats["draft_acceptance_rate"] == expected["draft_acceptance_rate"] == 3 / 8  # 3 of 8 drafted nodes
    assert stats["mean_accepted_without_bonus"] == 1.5 and stats["mean_accepted_with_bonus"] == 2.5
    assert stats["tokens_per_s"] is None and stats["speedup"] is None  # speed is the whole run's (run_stats)
    assert stats["per_position_acceptance"] == [1.0, 0.5]
    # the histogram as the panel shows it: steps by accepted drafts, up to the longest accepted run
    assert describe.accepted_histogram(stats) == [0, 1, 1]
    lone = describe.progress(STEPS[:1], options)
    assert lone["acceptance_length_histogram"] == [0, 1, 0] and describe.accepted_histogram(lone) == [0, 1]


def test_the_speed_is_the_whole_run_s_wall_time_one_definition_with_the_prompt_set_table():
    """Issue 23 item 5: the replay header's "measured" speedup is stats.measured_speedup of the run's own wall
    seconds (prefill to last step), the figure the prompt-set table shows (analysis.Counts.speedup), not of the
    steps' summed times."""
    from explorer.speculative.analysis import Counts
    from explorer.speculative.stats import measured_speedup

    options = SpecOptions(method="tree")
    base = TargetOnly([1, 2, 3, 4, 5], 0.1)
    assert describe.run_stats(STEPS, options, base, None) is None  # the run goes on: no speed yet
    run = describe.run_stats(STEPS, options, base, 0.08)  # 0.08 s wall against 0.06 s of the steps alone
    assert run["tokens_per_s"] == pytest.approx(5 / 0.08) and run["speedup"] == pytest.approx((5 / 0.08) / 50)
    assert run["speedup"] == measured_speedup(5, 0.08, 5, 0.1)
    row = Counts(new_tokens=5, seconds=0.08, target_only_tokens=5, target_only_seconds=0.1)
    assert row.speedup == run["speedup"]
    text = describe.speed_text(run, None)
    assert "run: <b>62</b> tok/s vs target alone 50" in text and f"measured <b>{run['speedup']:.2f}×</b>" in text


def test_header_names_the_step_the_rule_and_the_figures_and_hides_timings_in_recordings():
    options = SpecOptions(method="tree", accept="typical")
    stats = describe.progress(STEPS, options)
    run = describe.run_stats(STEPS, options, TargetOnly([1, 2, 3, 4, 5], 0.1), 0.06)
    costs = {"model_speedup": 1.234}
    live = describe.header_html(STEPS[1], 2, stats, run, costs, False, PALETTE)
    assert "step 2 of 2" in live and "tree drafting, typical acceptance" in live and "(not lossless)" in live
    # two acceptance figures, each under its own name (ANCHORS: Leviathan's α vs vLLM's acceptance rate)
    assert f"{describe.ALPHA_NAME} <b>0.75</b>" in live and f"{describe.RATE_NAME} 0.38" in live
    assert "mean accepted 1.50 (+bonus 2.50)" in live
    assert "tok/s vs target alone 50" in live and "cost model 1.23×" in live and "draft 10.0 ms (2 calls)" in live
    recorded = describe.header_html(STEPS[1], 2, stats, run, costs, True, PALETTE)
    assert "tok/s" not in recorded and " ms" not in recorded and describe.TIMINGS_OMITTED in recorded
    assert describe.speed_text(None, None) == ""


def test_a_step_that_drafted_nothing_says_why():
    """Issue 23 item 6: the last step of a run often drafts nothing; the header says why instead of "drafted 0,
    accepted 0"."""
    empty = replace(STEPS[0], tree=DraftTree(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                                             np.zeros(0, np.float32), [], None),
                    accepted=[], rejected=None, decisions=[], new_tokens=[5], origins=["bonus"], bonus_token=5)
    assert describe.why_nothing_drafted(STEPS[0], 0, 8, "chain") == ""
    at_limit = describe.why_nothing_drafted(empty, 7, 8, "eagle")
    assert "one token was left before the limit" in at_limit
    assert "no earlier n-gram" in describe.why_nothing_drafted(empty, 2, 8, "lookup")
    stats = describe.progress([empty], SpecOptions(method="eagle"))
    header = describe.header_html(empty, 1, stats, None, None, False, PALETTE, at_limit)
    assert at_limit in header and "drafted 0," not in header
    # ...and a finished run opens on its last step that drafted, not on that empty one
    assert describe.landing_step([STEPS[0], empty]) == 0 and describe.landing_step([empty, STEPS[0]]) == 1
    assert describe.landing_step([empty]) == 0 and describe.landing_step(STEPS) == 1


def test_text_links_each_token_to_its_step_and_highlights_the_current_one():
    out = describe.text_html([7], STEPS, 1, decode, PALETTE)
    assert "<a href='step:0'" in out and "<a href='step:1'" in out and out.count(PALETTE.highlight_bg) == 3
    assert f"color:{describe.ORIGIN_COLORS['bonus']}" in out
    assert "■ prompt" in describe.text_legend_html(PALETTE) and "■ prompt" not in out  # the legend: never scrolled


def test_tree_words_root_labels_and_tips():
    r = STEPS[1]
    subword = replace(r, root_token=10)
    assert describe.root_text(subword, [8, 9, 10], decode) == ("Additional", "ditional")  # the word it ends
    assert describe.root_text(r, [8, 7], decode) == ("word", " word")
    assert describe.root_text(r, [7, 8], decode) == (" word", " word")  # the context does not end in the root
    assert describe.root_text(r, [], None) == ("7", "7")
    assert describe.context_ids([7], STEPS, r) == [7, 1, 3]
    full, two = describe.node_labels(r, 2)
    assert full == "c  q 0.50 p 0.20" and two == "c\nq 0.50 p 0.20" and describe.token_only(full) == "c"
    assert describe.node_tip(r, 2, decode).endswith(": accepted") and "depth 2" in describe.node_tip(r, 2, decode)
    assert describe.node_state(r, 3) == "not reached by the walk" and describe.node_state(STEPS[0], 2) == "rejected"
    headed = step(source=np.array([0, 0, 1, 1]))
    assert describe.node_labels(headed, 3)[0].endswith(" h1") and "proposed by head 1" in describe.node_tip(
        headed, 3, None)  # fmt: skip
    assert describe.tree_titles(4, 2)[0].endswith("(2 labels hidden: hover a node)")


def test_why_undecided_names_the_walk_s_reason():
    r = STEPS[0]  # accepted 0, rejected 2 (under 0): node 3's parent was never accepted
    assert "its parent, node 1, was not accepted" in describe.why_undecided(r, 3)
    assert "the walk accepted its sibling, node 0" in describe.why_undecided(r, 1)
    first_rejected = step(accepted=(), rejected=0, decisions=[_decision(0, 1, False)])
    assert "the walk ended at node 0, rejected, before trying it" in describe.why_undecided(first_rejected, 1)
    cut = step(accepted=(0,), rejected=None, decisions=[_decision(0, 1, True)])
    assert describe.why_undecided(cut, 2) == "No decision on node 2: the walk ended before reaching it."
    assert describe.deciding_node(r) == 2 and describe.deciding_node(STEPS[1]) == 2
    assert describe.no_decision_titles(r, 1)[0] == "node 1: no decision"


def test_decision_words_per_rule_and_the_residual():
    r = STEPS[0]
    rejected = r.decisions[1]
    sample = _decision(0, 1, False, u=0.9, ratio=0.25)
    assert describe.decision_rule(sample, "sample") == "u = 0.900 ≥ min(1, p/q) = 0.250"
    typical = _decision(0, 1, True, ratio=0.09, entropy=1.5)
    assert describe.decision_rule(typical, "typical").endswith("H = 1.50 nats")
    assert describe.decision_rule(rejected, "greedy") == "greedy: the target's argmax is another token"
    caption = describe.decision_html(r, rejected, "greedy", decode, PALETTE)
    assert caption.startswith("<b>c</b>: p = 0.500, q = 0.400 → ") and "rejected" in caption
    assert "residual norm(max(0, p − q)): e 0.60, f 0.40 → sampled" in caption
    assert describe.residual_html(r, r.decisions[0], decode) == ""  # only on the rejected node
    assert describe.decision_labels([1, 2], 2, decode) == ["a", "➜ b"]


def test_mask_caption_runs_repeated_positions():
    assert describe.position_runs([12, 13, 13, 13, 14]) == "12 13×3 14"
    assert describe.mask_caption(STEPS[0]).startswith("position ids: 2 3×2 4×2<br>KV: target 8 slots → kept 2 new")


def test_costs_words():
    costs = {"nodes_per_step": 3.0, "break_even_tokens_per_step": 2.0, "measured_tokens_per_step": 2.5,
             "break_even_alpha": 0.5, "verify_cost_ratio": 1.2, "draft_cost_per_token": 0.3,
             "model_speedup": 1.25}  # fmt: skip
    text = describe.costs_caption(costs, False, 0.1, PALETTE)
    # plain words, no α (the header's α is the only one on screen): cost in target steps against tokens a step
    assert "Checking 3.0 drafts (chain) costs 1.20 target steps" in text
    assert "drafting and bookkeeping 1.00 more</span>: it pays above <b>2.00</b> tokens a step" in text  # 0.3·3+0.1
    assert "This run: <b>2.50</b></span> → pays (1.25×)" in text
    assert describe.ORIGIN_COLORS["accepted"] in text and "α" not in text
    assert describe.costs_note(True, True) == describe.TIMINGS_OMITTED
    assert describe.costs_note(False, True).startswith("measured when the run ends")
    assert describe.costs_note(False, False).startswith("not measured for this run")


def test_caption_fields_focus_and_export_rows():
    stats = describe.progress(STEPS, SpecOptions())
    fields = describe.caption_fields(STEPS[1], stats, decode)
    assert fields == {"drafted": 4, "accepted": 2, "new_tokens": 3, "text": "ac!", "ending": "bonus", "alpha": 0.75,
                      "mean_accepted": 1.5, "mean_with_bonus": 2.5, "total_tokens": 5}  # fmt: skip
    assert describe.caption_fields(STEPS[0], stats, None)["text"] == "1·3"
    assert describe.focus_problem(STEPS[0], 4) == "step 1 has no tree node 4 (its nodes are 0..3)"
    assert describe.focus_problem(STEPS[0], 3) is None
    header, rows = describe.export_rows(STEPS)
    assert header[0] == "step" and rows[1][:6] == [2, 4, 2, None, "1 3 8", "accepted accepted bonus"]  # from 1
