"""Words about a speculative run, as the speculative view shows them: the header lines, the coloured text, the tree's
labels and tooltips, the decision on a node and why a node has none, the mask's caption, the where-it-pays sentence,
tour caption fields and export rows.

Qt-free: strings (HTML where the view shows rich text) from records, run metadata and ``stats.compute_stats``, so
that every figure on screen is computed once, in the engine's package, and the words are tested without a display.
Colours come in as a palette (the UI theme has these attributes) or are the fixed origin colours below.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from ..models.text import visible_token
from .records import Decision, SpecOptions, StepRecord, TargetOnly
from .stats import compute_stats

Decode = Callable[[list[int]], str]

# Where each new token came from (the text, the tree's nodes, the legend): fixed, the same in both themes.
ORIGIN_COLORS = {"accepted": "#2a9d8f", "corrected": "#e4572e", "bonus": "#7b61ff"}
TIMINGS_OMITTED = "timings omitted in recordings"


class Palette(Protocol):
    """The theme colours the words use (explorer.ui.theme.Theme has them)."""

    text: str
    muted: str
    accent: str
    bar: str
    highlight_bg: str


def span(color: str, text: str) -> str:
    return f"<span style='color:{color}'>{text}</span>"


# ---- figures of the steps so far
def progress(upto: Sequence[StepRecord], options: SpecOptions) -> dict:
    """``compute_stats`` over the steps shown so far (``upto``: steps 0..k): α, the acceptance rate, mean accepted,
    per position and per head, the histogram of accepted lengths. No speed: that is the whole run's
    (:func:`run_stats`), one figure whichever step is shown."""
    n_new = sum(len(s.new_tokens) for s in upto)
    return compute_stats(list(upto), n_new, 0.0, options)


def run_stats(records: Sequence[StepRecord], options: SpecOptions, target_only: TargetOnly | None,
              seconds: float | None) -> dict | None:  # fmt: skip
    """``compute_stats`` of the whole run against the target alone, timed by the run's own wall seconds (prefill to
    last step): its tokens/s and measured speedup are the ones ``explorer speculate`` and the prompt-set table
    report (``stats.measured_speedup``). None while the run goes on or without a timed baseline."""
    if not seconds or target_only is None or not target_only.seconds:
        return None
    n_new = sum(len(s.new_tokens) for s in records)
    return compute_stats(list(records), n_new, seconds, options, target_only.tokens, target_only.seconds)


def accepted_histogram(stats: dict) -> list[int]:
    """Steps by accepted drafts, 0 up to the longest accepted run (the stats pad it to the tree's depth)."""
    hist = list(stats["acceptance_length_histogram"])
    while len(hist) > 1 and hist[-1] == 0:
        hist.pop()
    return hist


def deciding_node(r: StepRecord) -> int | None:
    """The node whose decision ended the step's walk: the rejected one, else the deepest accepted one."""
    return r.rejected if r.rejected is not None else (r.accepted[-1] if r.accepted else None)


# ---- the header
ALPHA_NAME = "α per position"  # Leviathan's: accepted / decided positions (stats.py)
RATE_NAME = "accepted/drafted"  # vLLM's draft acceptance rate: accepted / drafted tokens
FIGURES_TIP = (
    f"{ALPHA_NAME}: Leviathan's α, accepted drafted positions ÷ positions that had a decision (JSON: alpha)\n"
    f"{RATE_NAME}: vLLM's draft acceptance rate, accepted ÷ drafted tokens; every tree node counts "
    "(JSON: draft_acceptance_rate)\n"
    "mean accepted: drafts accepted per step (+bonus: tokens per step)\n"
    "measured: the whole run's tokens/s (prefill to last step) ÷ the target alone's (JSON: speedup)"
)


def speed_text(run: dict | None, costs: dict | None) -> str:
    """The whole run's tokens/s against the target alone and the measured speedup (with the cost model's, once
    measured); "" while the run goes on or when either side has no time. ``run``: :func:`run_stats`."""
    if run is None or run["tokens_per_s"] is None or not run["target_only_tokens_per_s"] or run["speedup"] is None:
        return ""
    model = f", cost model {costs['model_speedup']:.2f}×" if costs else ""
    return (
        f" · run: <b>{run['tokens_per_s']:.0f}</b> tok/s vs target alone {run['target_only_tokens_per_s']:.0f}"
        f" → measured <b>{run['speedup']:.2f}×</b>{model}"
    )


def step_cost_text(r: StepRecord, deterministic: bool) -> str:
    """What step ``r`` cost: draft calls and the verification forward (with their times unless recording), after
    the shape it drafted with when the chooser chose it (:func:`shape_text`)."""
    verify = f"one target forward over {len(r.tree.tokens) + 1} tokens"
    shape = shape_text(r)
    if deterministic:
        return f"{shape}draft: {r.draft_calls} calls, verify: {verify} · {TIMINGS_OMITTED}"
    return (
        f"{shape}draft {r.draft_seconds * 1000:.1f} ms ({r.draft_calls} calls), "
        f"verify {r.verify_seconds * 1000:.1f} ms ({verify})"
    )


def shape_text(r: StepRecord) -> str:
    """ "shape (auto) chain 3 · ", with what changed at this step and why; "" for a fixed shape."""
    if not r.shape:
        return ""
    probe = " (a probe)" if r.shape.get("probe") else ""
    change = r.shape.get("change")
    short = r.shape.get("short") or r.shape["label"]
    auto = f"(auto, {r.shape['drafter']})" if r.shape.get("drafter") else "(auto)"  # lookup first: who drafted
    if change and change.get("from"):
        was = change.get("from_short") or change["from"]
        return f"shape {auto} → <b>{short}</b>, was {was}: {change['reason']}{probe} · "
    return f"shape {auto} {short}{probe} · "


def shape_changes(records: Sequence[StepRecord]) -> list[tuple[int, str]]:
    """Where the chooser changed the shape after its first choice: (0-based step, the new shape, short)."""
    return [(s.step, s.shape["change"].get("to_short") or s.shape["change"]["to"]) for s in records
            if s.shape and s.shape.get("change") and s.shape["change"].get("from")]  # fmt: skip


def method_note(method_choice: str | None) -> str:
    """ "(auto: eagle 1.93×, medusa 1.36×)": what auto's method was expected to pay against the others (lookup first:
    ", else eagle (auto: eagle 1.93×, medusa 1.36×)", after "lookup drafting"); ""."""
    if not method_choice:
        return ""
    figures = method_choice[method_choice.find("(") + 1 : method_choice.rfind(")")] if "(" in method_choice else ""
    first = re.search(r"prompt lookup first, else the (\w+) heads", method_choice)
    if first:  # lookup first, the heads where it is not expected to pay more: theirs and the runner-up's figures
        return f", else {first.group(1)} (auto: {', '.join(figures.split(', ')[:2])})"  # (the header fits 720p)
    return f" (auto{': ' + figures if figures else ''})"


def choice_caption(report: dict | None, method_choice: str | None = None, brief: bool = False) -> str:
    """What auto chose and why, short: the shape's expected tokens per step and speedup against its neighbours'
    (the chooser's report, explorer/speculative/shape.py); "" for a fixed shape. ``brief``: the shape and its
    expected speedup alone, for a small panel."""
    if not report:
        return ""
    near = ", ".join(f"{name} {n['expected_speedup']:.2f}×" for name, n in report["neighbours"].items()
                     if n is not None and name in ("deeper", "wider", "chain"))  # fmt: skip
    fell = report.get("fallback")  # "step N: no draft shape is expected to pay ...": the JSON has the whole note
    fallback = f" Plain decoding from {fell.split(':')[0]}: no shape was expected to pay." if fell else ""
    short = report["shape"].get("short") or report["shape"]["label"]
    if brief:
        fallback = f" Plain from {fell.split(':')[0]}." if fell else ""
        return f"★ auto <b>{short}</b>: {report['expected_speedup']:.2f}× expected.{fallback}"
    return (
        f"★ auto <b>{short}</b>: {report['expected_tokens_per_step']:.2f} tok/step, "
        f"{report['expected_speedup']:.2f}× expected{f' ({near})' if near else ''}.{fallback}"
    )


def why_nothing_drafted(r: StepRecord, before: int, max_new: int | None, method: str) -> str:
    """Why step ``r`` drafted nothing (``before``: new tokens of the steps before it; ``max_new``: the token
    limit, None when not known); "" when it drafted."""
    if len(r.tree.tokens):
        return ""
    if max_new is not None and max_new - before <= 1:
        return "nothing drafted: one token was left before the limit, the target's alone"
    if method == "lookup":
        return "nothing drafted: no earlier n-gram matched the text's end"
    return "nothing drafted this step: the target decoded one token alone"


def outcome_text(r: StepRecord, why_empty: str) -> str:
    """This step's outcome: drafted and accepted, and how it ended (or why nothing was drafted)."""
    if not len(r.tree.tokens):
        return f"<b>{why_empty}</b>"
    ending = "bonus" if r.bonus_token is not None else "corrected"
    return f"drafted {len(r.tree.tokens)}, accepted <b>{len(r.accepted)}</b> + {ending}"


def header_html(r: StepRecord, n_steps: int, stats: dict, run: dict | None, costs: dict | None,
                deterministic: bool, palette: Palette, why_empty: str = "", auto: str = "") -> str:  # fmt: skip
    """The view's header: the step, the method and rule and this step's outcome; the figures so far (α and the
    acceptance rate by name, mean accepted both ways) and the whole run's speed (not in recordings: timings);
    the step's cost. ``run``: :func:`run_stats`; ``why_empty``: :func:`why_nothing_drafted`."""
    speed = "" if deterministic else speed_text(run, costs)
    lossless = "" if stats["lossless"] else " <span style='color:#e4572e'>(not lossless)</span>"
    return (
        f"<b style='font-size:120%'>step {r.step + 1} of {n_steps}</b> &nbsp; "
        f"{stats['method']} drafting{auto}, {stats['accept']} acceptance{lossless} &nbsp; {outcome_text(r, why_empty)}"
        f"<br>{ALPHA_NAME} <b>{stats['alpha']:.2f}</b> · {RATE_NAME} {stats['draft_acceptance_rate']:.2f} · "
        f"mean accepted {stats['mean_accepted_without_bonus']:.2f} (+bonus {stats['mean_accepted_with_bonus']:.2f})"
        f"{speed}"
        f"<br>{span(palette.muted, step_cost_text(r, deterministic))}"
    )


def empty_header_html(hint: str, palette: Palette, note: str = "") -> str:
    """The empty view's line: what Run will do, and under it ``note`` (what cannot run here and how to fix it)."""
    return span(palette.muted, hint) + (f"<br>{span(palette.muted, html.escape(note))}" if note else "")


def method_action(method: str) -> str:
    """What Run does with ``method`` ("Press Run to <this>.")."""
    if method == "auto":
        return "speculate with the drafting expected to pay most on this machine"
    if method in ("chain", "tree"):
        return f"speculate with the draft model ({method})"
    if method == "lookup":
        return "speculate with prompt lookup (no draft model needed)"
    return f"speculate with the target's {method} heads"


def unavailable_note(problems: dict[str, str | None]) -> str:
    """Which drafting methods cannot run on these models and why (job.method_problems), in one or two lines."""
    missing = [m for m, why in problems.items() if why is not None]
    if not missing:
        return ""
    heads = [m for m in missing if "heads" in (problems[m] or "")]
    parts = []
    if "chain" in missing:
        parts.append("chain and tree need a draft model")
    if heads:
        parts.append(f"{'/'.join(heads)} need heads, not found; train them: {problems[heads[0]].split(': ', 1)[1]}")
    return "; ".join(parts) + "."


# ---- the text
def text_html(
    prompt_ids: list[int], upto: Sequence[StepRecord], current: int, decode: Decode, palette: Palette
) -> str:
    """The prompt (muted) and every new token so far coloured by its origin, each a link to its step; step
    ``current``'s tokens highlighted. Its legend is :func:`text_legend_html` (shown above it, never scrolled away)."""
    parts = [span(palette.muted, html.escape(decode(prompt_ids)))]
    changed = dict(shape_changes(upto))
    for s in upto:
        if s.step in changed:  # the chooser changed the shape here: a mark in the text, where it happened
            parts.append(span(palette.accent, f"<small>⟨{html.escape(changed[s.step])}⟩</small>"))
        for tok, origin in zip(s.new_tokens, s.origins, strict=True):
            style = f"color:{ORIGIN_COLORS.get(origin, palette.text)}; text-decoration:none"
            if s.step == current:
                style += f"; background-color:{palette.highlight_bg}; font-weight:bold"
            parts.append(f"<a href='step:{s.step}' style='{style}'>{html.escape(decode([tok]))}</a>")
    body = "".join(parts)
    return f"<pre style='white-space:pre-wrap; margin:0'>{body}</pre>"


def text_legend_html(palette: Palette) -> str:
    """The text's colour legend: the prompt and where each new token came from."""
    return " ".join(
        f"<span style='color:{c}'>■ {name}</span>" for name, c in (("prompt", palette.muted), *ORIGIN_COLORS.items())
    )


# ---- the tree
def context_ids(prompt_ids: list[int], records: Sequence[StepRecord], r: StepRecord) -> list[int]:
    """The tokens before step ``r`` (prompt + every earlier step's new tokens): the root is the last one."""
    ids = list(prompt_ids)
    for s in records[: r.step]:
        ids += s.new_tokens
    return ids


def root_text(r: StepRecord, context: list[int], decode: Decode | None) -> tuple[str, str]:
    """(label, exact token) of the root: the whole word the root token ends (a subword token alone reads as a
    fragment, "ditional"), and the token itself for the tooltip."""
    if decode is None:
        return str(r.root_token), str(r.root_token)
    token = decode([r.root_token])
    if not context or context[-1] != r.root_token:
        return token, token
    word = decode(context[-8:]).rstrip("\n")
    cut = max(word.rfind(c) for c in " \n\t([{.,:;=\"'")
    word = word[cut + 1 :] if cut + 1 < len(word) else word[cut:]
    return (word if word.endswith(token.strip()) and len(word) >= len(token.strip()) else token), token


def root_label(label: str) -> str:
    return f"{visible_token(label, 24)} (root)"


def root_tip(r: StepRecord, token: str) -> str:
    return f"root: “{token}” (token {r.root_token}), the last token before this step"


def node_state(r: StepRecord, i: int) -> str:
    """What the acceptance walk did with node ``i``."""
    if i in r.accepted:
        return "accepted"
    if i == r.rejected:
        return "rejected"
    return "decided" if any(d.node == i for d in r.decisions) else "not reached by the walk"


def node_labels(r: StepRecord, i: int) -> tuple[str, str]:
    """Node ``i``'s label on one line and on two: its token, then q and p (and the head that proposed it)."""
    source = r.tree.source
    src = f" h{int(source[i])}" if source is not None else ""
    head = visible_token(r.tree.texts[i], 24)
    figures = f"q {r.tree.q[i]:.2f} p {r.p[i]:.2f}{src}"
    return f"{head}  {figures}", f"{head}\n{figures}"


def token_only(label: str) -> str:
    """A one-line node label without its figures (q and p then show on hover)."""
    return label.split("  q ")[0]


def node_tip(r: StepRecord, i: int, decode: Decode | None) -> str:
    """Everything about node ``i``, shown on hover (its label may be hidden or cut)."""
    source = r.tree.source
    by = f", proposed by head {int(source[i])}" if source is not None else ""
    token_id = int(r.tree.tokens[i])
    text = decode([token_id]) if decode else r.tree.texts[i]
    return (
        f"node {i}: “{text}” (token {token_id}), depth {int(r.tree.depth[i])}{by}\n"
        f"draft q {r.tree.q[i]:.4f}, target p {r.p[i]:.4f}: {node_state(r, i)}"
    )


def tree_titles(n: int, hidden: int) -> list[str]:
    return [
        "draft tree: accepted path, rejected node, the rest faded"
        + (f" ({hidden} labels hidden: hover a node)" if hidden else ""),
        f"draft tree, {n} nodes" + (f" ({hidden} unlabelled: hover)" if hidden else ""),
        "draft tree",
    ]


TREE_TITLE = tree_titles(0, 0)[0]


# ---- the decision
def why_undecided(r: StepRecord, node: int) -> str:
    """Why the acceptance walk made no decision on ``node``: it only tries children of accepted nodes, in order,
    and stops at the first rejection with no sibling left to try."""
    parent = int(r.tree.parent[node])
    decided = {d.node for d in r.decisions}
    if parent >= 0 and parent not in r.accepted:
        return f"No decision on node {node}: its parent, node {parent}, was not accepted, so the walk never reached it."
    siblings = [d.node for d in r.decisions if d.node != node and int(r.tree.parent[d.node]) == parent]
    taken = [i for i in siblings if i in r.accepted]
    if taken:
        return f"No decision on node {node}: the walk accepted its sibling, node {taken[0]}, and went on from there."
    if r.rejected is not None and r.rejected in decided:
        return f"No decision on node {node}: the walk ended at node {r.rejected}, rejected, before trying it."
    return f"No decision on node {node}: the walk ended before reaching it."


def no_decision_titles(r: StepRecord, selected: int | None) -> list[str]:
    if selected is None or not len(r.tree.tokens):
        return ["no decision: nothing was drafted this step", "nothing drafted", "none"]
    return [f"node {selected}: no decision", "no decision", "none"]


def decision_titles(decision: Decision, palette: Palette) -> list[str]:
    """The decision plot's title, which is its legend: target p and draft q in their bars' colours."""
    node = decision.node
    return [
        f"node {node}: {span(palette.bar, '■ target p')} vs {span(palette.accent, '■ draft q')}",
        f"node {node}: {span(palette.bar, '■ p')} {span(palette.accent, '■ q')}",
        f"{span(palette.bar, '■ p')} {span(palette.accent, '■ q')}",  # zoomed text in a narrow panel
    ]


def decision_labels(ids: list[int], chosen: int, decode: Decode) -> list[str]:
    """The decision plot's token labels, the candidate marked with an arrow."""
    return [("➜ " if i == chosen else "") + visible_token(decode([i]), 12) for i in ids]


def decision_rule(decision: Decision, accept: str) -> str:
    """Why the rule decided as it did: the draw against min(1, p/q), the typical threshold, or greedy's argmax."""
    if accept == "sample" and decision.u is not None:
        return f"u = {decision.u:.3f} {'<' if decision.accepted else '≥'} min(1, p/q) = {decision.ratio:.3f}"
    if accept == "typical":
        return (
            f"p = {decision.p:.3f} vs threshold min(ε, δ·e^(−H)) = {decision.ratio:.3f}, "
            f"H = {decision.entropy:.2f} nats"
        )
    if decision.accepted:
        return "greedy: the draft token equals the target's argmax"
    return "greedy: the target's argmax is another token"


def residual_html(r: StepRecord, decision: Decision, decode: Decode) -> str:
    """After a rejection: the residual distribution's top entries and the token sampled from it ("" otherwise)."""
    if r.residual_token is None or decision.node != r.rejected or r.residual_top_ids is None:
        return ""
    top = ", ".join(
        f"{html.escape(visible_token(decode([int(i)]), 8))} {p:.2f}"
        for i, p in zip(r.residual_top_ids[:4], r.residual_top_probs[:4], strict=True)
    )
    sampled = html.escape(visible_token(decode([r.residual_token])))
    return (
        f"<br>residual norm(max(0, p − q)): {top} → sampled "
        f"<b style='color:{ORIGIN_COLORS['corrected']}'>{sampled}</b>"
    )


def decision_html(r: StepRecord, decision: Decision, accept: str, decode: Decode, palette: Palette) -> str:
    """The decision caption: the token, p and q, the verdict, why, and the residual after a rejection."""
    verdict = "accepted" if decision.accepted else "rejected"
    color = ORIGIN_COLORS["accepted"] if decision.accepted else palette.accent
    return (
        f"<b>{html.escape(visible_token(decode([decision.token])))}</b>: p = {decision.p:.3f}, "
        f"q = {decision.q:.3f} → <b style='color:{color}'>{verdict}</b><br>{decision_rule(decision, accept)}"
        f"{residual_html(r, decision, decode)}"
    )


# ---- the mask
def position_runs(values: list[int]) -> str:
    """ "12 13 13 13 14" as "12 13×3 14": a tree's position ids repeat once per node of a depth."""
    out: list[str] = []
    for v in values:
        if out and out[-1].split("×")[0] == str(v):
            k = int(out[-1].split("×")[1]) + 1 if "×" in out[-1] else 2
            out[-1] = f"{v}×{k}"
        else:
            out.append(str(v))
    return " ".join(out)


def mask_caption(r: StepRecord) -> str:
    return (
        f"position ids: {position_runs(r.position_ids.tolist())}<br>KV: target {r.target_slots_verified} slots → "
        f"kept {len(r.target_slots_kept)} new, draft kept {len(r.draft_slots_kept)}"
    )


MASK_TITLES = ["tree attention mask", "attention mask", "mask"]


# ---- the statistics
HIST_TITLES = ["accepted per step", "accepted/step", "accepted"]
# vLLM's per-position acceptance rate (stats' per_position_acceptance: steps that accepted position d / steps): not
# α, which the header names.
POSITION_TITLES = ["acceptance rate by position", "rate by position", "by position"]


def position_head_titles(palette: Palette) -> list[str]:
    """The acceptance-rate panel's title with drafting heads: per position and per head, each in its bars' colour."""
    head = ORIGIN_COLORS["accepted"]
    return [
        f"acceptance rate: {span(palette.bar, '■ by position')} {span(head, '■ by head')}",
        f"{span(palette.bar, '■ position')} {span(head, '■ head')}",
        f"{span(palette.bar, '■ pos')} {span(head, '■ head')}",
        f"{span(palette.bar, '■pos')} {span(head, '■head')}",
    ]


# ---- where it pays
COSTS_EMPTY_TITLES = ["where it pays", "pays?"]
COSTS_TITLES = ["where it pays: step cost vs tokens a step", "where it pays", "pays?"]


def costs_note(deterministic: bool, pending: bool) -> str:
    """Why the where-it-pays panel is empty: a recording, a run still going (``pending``), or none measured."""
    if deterministic:
        return TIMINGS_OMITTED
    if pending:
        return "measured when the run ends: the cost of verifying 1..32 tokens on this machine"
    return "not measured for this run (explorer speculate --costs measures it)"


COSTS_AXIS_LEFT = "cost (target steps)"
COSTS_AXIS_RIGHT = "tokens per step"


def costs_legend_html(palette: Palette, run_color: str, chosen: bool = False, short: bool = False) -> str:
    """The where-it-pays plot's legend: its two curves, the break-even point and line, this run's dot, and with
    ``chosen`` auto's shape (★) and its neighbours (◇), at their expected tokens per step. ``short``: the same
    marks in fewer words, for a small panel (the dashed line carries its own "break-even" label)."""
    words = ("━ verify", "━ + drafting", "○ ┅ break-even", "● run", "★ auto", "◇ others") if short else (
        "━ verify", "━ + drafting, bookkeeping", "○ ┅ break-even", "● this run", "★ auto shape", "◇ neighbours")
    colors = (palette.bar, palette.accent, palette.accent, run_color, palette.accent, palette.accent)
    entries = [span(color, word.replace(" ", "&nbsp;").replace("-", "&#8209;"))  # non-breaking space and hyphen
               for color, word in zip(colors, words, strict=True)]  # fmt: skip
    return " &nbsp;".join(entries if chosen else entries[:4])  # an entry wraps whole, never "pays / above"


def choice_marks(report: dict | None) -> list[tuple[float, float]]:
    """(nodes, expected tokens per step) of auto's shape, then of its neighbours (deeper, wider, chain): the
    where-it-pays panel's star and diamonds. [] for a fixed shape."""
    if not report:
        return []
    near = report["neighbours"]
    out = [(report["shape"]["budget"], report["expected_tokens_per_step"])]
    for name in ("deeper", "wider", "chain"):
        n = near.get(name)
        if n is not None and n["shape"] != report["shape"]:
            out.append((n["shape"]["budget"], n["expected_tokens_per_step"]))
    return out


def _verdict(costs: dict) -> tuple[float, float, str, str]:
    """(break-even tokens per step, the run's, the run's colour, "pays" or "does not pay")."""
    need, have = costs["break_even_tokens_per_step"], costs["measured_tokens_per_step"]
    pays = have >= need
    return need, have, ORIGIN_COLORS["accepted" if pays else "corrected"], "pays" if pays else "does not pay"


def costs_caption(costs: dict, tree: bool, bookkeeping: float, palette: Palette) -> str:
    """The where-it-pays sentence in plain words, in the curves' colours: what checking the run's drafts costs
    in plain target steps, what a whole step costs with drafting and bookkeeping (the tokens it must yield to
    pay: break-even), and what this run's steps yielded."""
    nodes = costs["nodes_per_step"]
    need, have, color, verdict = _verdict(costs)
    shape = "tree" if tree else "chain"
    extra = costs["draft_cost_per_token"] * nodes + bookkeeping
    verify = f"Checking {nodes:.1f} drafts ({shape}) costs {costs['verify_cost_ratio']:.2f} target steps"
    more = f"drafting and bookkeeping {extra:.2f} more"
    return (
        f"{span(palette.bar, verify)}, {span(palette.accent, more)}: it pays above <b>{need:.2f}</b> "
        f"tokens a step. {span(color, f'This run: <b>{have:.2f}</b>')} → {verdict} ({costs['model_speedup']:.2f}×)."
    )


def costs_caption_short(costs: dict, palette: Palette) -> str:
    """costs_caption's verdict alone, for a small panel (the whole sentence is the panel's tooltip)."""
    need, have, color, verdict = _verdict(costs)
    return (
        f"{span(palette.accent, f'Pays above <b>{need:.2f}</b> tok/step')}; "
        f"{span(color, f'run <b>{have:.2f}</b>')} → {verdict} ({costs['model_speedup']:.2f}×)."
    )


# ---- tours and export
def caption_fields(r: StepRecord, stats: dict, decode: Decode | None) -> dict:
    """The live numbers of step ``r`` that a tour caption may name ({alpha}, {text}, ...); ``stats``: progress()
    over the steps up to it."""
    decode = decode or (lambda ids: " ".join(map(str, ids)))
    return {
        "drafted": len(r.tree.tokens),
        "accepted": len(r.accepted),
        "new_tokens": len(r.new_tokens),
        "text": visible_token(decode(r.new_tokens), 24),
        "ending": "bonus" if r.bonus_token is not None else "corrected",
        "alpha": stats["alpha"],
        "mean_accepted": stats["mean_accepted_without_bonus"],
        "mean_with_bonus": stats["mean_accepted_with_bonus"],
        "total_tokens": stats["new_tokens"],
    }


def focus_problem(r: StepRecord, select: int) -> str | None:
    """Why a tour cannot select tree node ``select`` at step ``r`` (None when it exists)."""
    n = len(r.tree.tokens)
    if not 0 <= select < n:
        nodes = f"its nodes are 0..{n - 1}" if n else "it drafted nothing"
        return f"step {r.step + 1} has no tree node {select} ({nodes})"
    return None


EXPORT_HEADER = ["step", "drafted", "accepted", "rejected_node", "new_tokens", "origins", "draft_ms", "verify_ms"]


def export_step(s: StepRecord) -> dict:
    """A step as the view's JSON export and ``explorer speculate --json`` give it: counted from 1, as the header and
    the player count it (``StepRecord.step`` is the 0-based index run files store)."""
    return {**s.as_dict(), "step": s.step + 1}


def export_rows(records: Sequence[StepRecord]) -> tuple[list[str], list[list]]:
    """One CSV row per step (counted from 1): what was drafted and accepted, the new tokens and where they came
    from, the times."""
    rows = [
        [
            s.step + 1,
            len(s.tree.tokens),
            len(s.accepted),
            s.rejected,
            " ".join(map(str, s.new_tokens)),
            " ".join(s.origins),
            s.draft_seconds * 1000,
            s.verify_seconds * 1000,
        ]
        for s in records
    ]
    return list(EXPORT_HEADER), rows


def landing_step(steps: list[StepRecord]) -> int:
    """Where a finished run opens: its last step that drafted something (a run's last step often drafts nothing,
    with one token left before the limit), else its last step."""
    drafted = [i for i, r in enumerate(steps) if len(r.tree.tokens)]
    return drafted[-1] if drafted else len(steps) - 1
