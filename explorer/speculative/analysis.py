"""Where the draft fails on a prompt set, from a run's results alone (no model): per prompt and per category,
by draft position, calibration of the draft's confidence, by token class, the most rejected tokens, and how
compared configurations differ prompt by prompt. Qt-free; every number is recomputed from the stored rows."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from .runs import PromptResult, Run
from .stats import measured_speedup

N_BINS = 10
TOKEN_CLASSES = ("whitespace", "identifier", "digits", "punctuation", "other", "after a newline")


# ---------------------------------------------------------------------------------------------- per prompt
@dataclass
class Counts:
    """Sums a ratio can be pooled from (over one prompt, a category, a whole configuration)."""

    prompts: int = 0
    steps: int = 0
    accepted: int = 0  # accepted draft tokens
    tried: int = 0  # positions that had a decision: accepted + steps ended by a rejection
    drafted: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    target_only_tokens: int = 0
    target_only_seconds: float = 0.0

    def add(self, r: PromptResult) -> None:
        steps, accepted, tried, drafted, new_tokens = r.totals()
        self.prompts += 1
        self.steps += steps
        self.accepted += accepted
        self.tried += tried
        self.drafted += drafted
        self.new_tokens += new_tokens
        self.seconds += float(r.stats.get("seconds") or 0.0)
        self.target_only_tokens += len(r.target_only.get("tokens", []))
        self.target_only_seconds += float(r.target_only.get("seconds") or 0.0)

    @property
    def alpha(self) -> float:
        """Leviathan's α as the speculative view and ``stats.compute_stats`` define it: accepted / decided positions."""
        return self.accepted / self.tried if self.tried else 0.0

    @property
    def mean_accepted(self) -> float:
        """Accepted drafts per step, without the bonus (gpt-fast's convention)."""
        return self.accepted / self.steps if self.steps else 0.0

    @property
    def mean_with_bonus(self) -> float:
        """Tokens a step adds counting the corrected / bonus token (Spec-Bench's and vLLM's convention)."""
        return (self.accepted + self.steps) / self.steps if self.steps else 0.0

    @property
    def tokens_per_step(self) -> float:
        """New tokens per target forward (the bonus counted, cut at EOS / the token limit)."""
        return self.new_tokens / self.steps if self.steps else 0.0

    @property
    def speedup(self) -> float | None:
        """The measured speedup (``stats.measured_speedup``, the replay header's figure too): tokens/s speculating,
        prefill to last step, over tokens/s of the target alone on the same prompts; pooled over the prompts."""
        return measured_speedup(self.new_tokens, self.seconds, self.target_only_tokens, self.target_only_seconds)

    def as_dict(self) -> dict:
        return {
            "prompts": self.prompts, "steps": self.steps, "new_tokens": self.new_tokens, "alpha": self.alpha,
            "mean_accepted_without_bonus": self.mean_accepted, "mean_accepted_with_bonus": self.mean_with_bonus,
            "tokens_per_step": self.tokens_per_step, "speedup": self.speedup,
        }  # fmt: skip


def counts(results: list[PromptResult]) -> Counts:
    c = Counts()
    for r in results:
        c.add(r)
    return c


def prompt_row(r: PromptResult) -> dict:
    """The table's numbers for one prompt under one configuration."""
    c = counts([r])
    return {**c.as_dict(), "first_divergence": r.stats.get("first_divergence")}


# ---------------------------------------------------------------------------------------------- aggregates
def by_config(run: Run) -> dict[int, list[PromptResult]]:
    out: dict[int, list[PromptResult]] = defaultdict(list)
    for r in run.results:
        out[r.config].append(r)
    return out


def categories(results: list[PromptResult]) -> dict[str, Counts]:
    """Pooled counts per category (in first-seen order), the whole set under ``"all"``."""
    out: dict[str, Counts] = {}
    for r in results:
        out.setdefault(r.category or "(none)", Counts()).add(r)
    out["all"] = counts(results)
    return out


def per_position(results: list[PromptResult]) -> dict:
    """Acceptance by draft position d = 1, 2, ...: of the steps that drafted that deep, the share that accepted
    position d (vLLM's per-position rate), and the share of those that reached d (accepted d − 1) and accepted it."""
    rows = np.concatenate([r.step_rows for r in results]) if results else np.zeros((0, 5), np.int64)
    depth = int(rows[:, 1].max()) if len(rows) else 0
    rate, conditional, steps = [], [], []
    for d in range(1, depth + 1):
        drafted = rows[rows[:, 1] >= d]
        steps.append(len(drafted))
        accepted = int((drafted[:, 0] >= d).sum())
        reached = int((drafted[:, 0] >= d - 1).sum())
        rate.append(accepted / len(drafted) if len(drafted) else 0.0)
        conditional.append(accepted / reached if reached else 0.0)
    return {"position": list(range(1, depth + 1)), "rate": rate, "conditional": conditional, "steps": steps}


def calibration(results: list[PromptResult], bins: int = N_BINS) -> dict:
    """Every decision binned by the draft's confidence q in its token (equal-width bins over [0, 1]): mean q
    against the observed acceptance. A calibrated draft lies on the diagonal; below it, over-confident.
    ``ece`` is the expected calibration error (the decisions-weighted mean gap)."""
    dec = np.concatenate([r.decisions for r in results]) if results else np.zeros((0, 8))
    q, ok = dec[:, 3], dec[:, 5]
    index = np.minimum((q * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    q_sum = np.bincount(index, weights=q, minlength=bins)
    ok_sum = np.bincount(index, weights=ok, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_q = np.where(count > 0, q_sum / np.maximum(count, 1), np.nan)
        rate = np.where(count > 0, ok_sum / np.maximum(count, 1), np.nan)
    ece = float(np.nansum(np.abs(mean_q - rate) * count) / count.sum()) if count.sum() else 0.0
    return {
        "edges": np.linspace(0, 1, bins + 1).tolist(),
        "count": count.tolist(),
        "mean_q": [None if np.isnan(x) else float(x) for x in mean_q],
        "acceptance": [None if np.isnan(x) else float(x) for x in rate],
        "decisions": int(len(dec)),
        "ece": ece,
    }


def token_class(text: str) -> str:
    """whitespace, identifier (names and keywords, a leading space allowed), digits, punctuation or other."""
    core = text.strip()
    if not core:
        return "whitespace"
    if core.isdigit():
        return "digits"
    if core.isidentifier():
        return "identifier"
    if all(not ch.isalnum() and not ch.isspace() for ch in core):
        return "punctuation"
    return "other"


def by_token_class(results: list[PromptResult]) -> dict[str, dict]:
    """Acceptance of the drafted token by its class; "after a newline" (the token before it ends a line) overlaps
    the others. Counted per distinct (token, previous token, accepted) row: a 1,000-prompt run has ~50k decisions
    but a few thousand distinct rows."""
    tried, ok = Counter(), Counter()
    for r in results:
        if not len(r.decisions):
            continue
        rows, n = np.unique(r.decisions[:, [2, 7, 5]].astype(np.int64), axis=0, return_counts=True)
        for (token, prev, accepted), count in zip(rows.tolist(), n.tolist(), strict=True):
            classes = [token_class(r.texts.get(token, ""))]
            if r.texts.get(prev, "").endswith("\n"):
                classes.append("after a newline")
            for c in classes:
                tried[c] += count
                ok[c] += accepted * count
    return {c: {"decisions": tried[c], "accepted": ok[c], "acceptance": ok[c] / tried[c] if tried[c] else None}
            for c in TOKEN_CLASSES}  # fmt: skip


def rejected_tokens(results: list[PromptResult], top: int = 12) -> list[dict]:
    """The draft tokens rejected most often, how often they were drafted, and what the output had instead."""
    rejected, decided, instead = Counter(), Counter(), defaultdict(Counter)
    texts: dict[int, str] = {}
    for r in results:
        texts.update(r.texts)
        for row in r.decisions:
            token = int(row[2])
            decided[token] += 1
            if not row[5]:
                rejected[token] += 1
                if row[6] >= 0:
                    instead[token][int(row[6])] += 1
    out = []
    for token, n in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        out.append({
            "token": token, "text": texts.get(token, ""), "rejected": n, "decisions": decided[token],
            "instead": [{"token": t, "text": texts.get(t, ""), "count": c}
                        for t, c in sorted(instead[token].items(), key=lambda kv: (-kv[1], kv[0]))[:3]],
        })  # fmt: skip
    return out


def differences(run: Run, other: int, base: int = 0, top: int = 10) -> dict:
    """Configuration ``other`` against ``base`` on the prompts both ran: per prompt Δα, Δ tokens per step and
    Δ speedup, and the prompts whose tokens per step changed most (either way)."""
    groups = by_config(run)
    a = {r.prompt: r for r in groups.get(base, [])}
    b = {r.prompt: r for r in groups.get(other, [])}
    rows = []
    for pid, rb in b.items():
        if pid not in a:
            continue
        ra, ca, cb = a[pid], counts([a[pid]]), counts([rb])
        sa, sb = ca.speedup, cb.speedup
        rows.append({
            "prompt": pid, "category": rb.category, "alpha": cb.alpha - ca.alpha,
            "tokens_per_step": cb.tokens_per_step - ca.tokens_per_step,
            "speedup": None if sa is None or sb is None else sb - sa,
            "same_tokens": ra.token_ids == rb.token_ids,
        })  # fmt: skip
    changed = sorted(rows, key=lambda d: -abs(d["tokens_per_step"]))[:top]
    better = sum(d["tokens_per_step"] > 0 for d in rows)
    worse = sum(d["tokens_per_step"] < 0 for d in rows)
    return {"base": base, "other": other, "prompts": rows, "most_changed": changed, "better": better, "worse": worse}


def analyse(run: Run) -> dict:
    """Everything above, per configuration, as plain JSON-ready data (``explorer speculate --json`` ends with it)."""
    configs = run.configurations
    groups = by_config(run)
    out = {"kind": "aggregates", "configurations": []}
    for i, c in enumerate(configs):
        results = groups.get(i, [])
        entry = {
            "config": i, "key": c.key, "describe": c.describe(), "accept": c.values.get("accept"),
            "categories": {k: v.as_dict() for k, v in categories(results).items()},
            "per_position": per_position(results), "calibration": calibration(results),
            "token_classes": by_token_class(results), "rejected_tokens": rejected_tokens(results),
        }  # fmt: skip
        if i > 0:
            entry["versus_base"] = differences(run, i)
        out["configurations"].append(entry)
    return out
