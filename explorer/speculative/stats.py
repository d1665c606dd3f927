"""What a speculative run measured: α, the draft acceptance rate, mean accepted tokens with and without the bonus
(both conventions, named), per-position acceptance, speeds, measured and theoretical speedup, first divergence from
plain greedy.

Names, one definition each (docs/app.md, "Acceptance figures"):

- ``alpha`` (α): Leviathan's per-position acceptance, estimated from the walk: accepted drafted positions over the
  positions that had a decision (accepted + the one rejection that ended a step). A step that drafted nothing
  adds nothing to it.
- ``draft_acceptance_rate``: vLLM's, accepted drafted tokens over drafted tokens (a tree's every node counts, so
  wide trees lower it).
- ``speedup`` (measured): :func:`measured_speedup`, tokens/s of the speculative run, prefill to last step, over
  tokens/s of the target alone on the same prompt (its prefill included).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from .records import SpecOptions, StepRecord


@dataclass
class SpecResult:
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    steps: list[StepRecord]
    stats: dict = field(default_factory=dict)

    def as_dict(self, steps: bool = True) -> dict:
        out = {"prompt_ids": self.prompt_ids, "token_ids": self.token_ids, "text": self.text}
        if steps:
            out["steps"] = [s.as_dict() for s in self.steps]
        out["stats"] = self.stats
        return out


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """First index where two token lists differ (a prefix of unequal length differs at its end); None if equal."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def decided_positions(steps: list[StepRecord]) -> int:
    """Positions that had a decision: each step's accepted drafts plus the rejection that ended it (if any)."""
    return sum(len(s.accepted) + (s.rejected is not None) for s in steps)


def measured_speedup(new_tokens: int, seconds: float, base_tokens: int, base_seconds: float) -> float | None:
    """The measured speedup, one definition for every view and command: (new tokens / wall seconds of the
    speculative run, prefill to its last step) over (tokens / wall seconds of the target alone, prefill included).
    None when either side has no time or no tokens."""
    if not (seconds and base_seconds and base_tokens and new_tokens):
        return None
    return (new_tokens / seconds) / (base_tokens / base_seconds)


def theoretical_speedup(alpha: float, gamma: float, c: float) -> float:
    """(1 − α^(γ+1)) / ((1 − α)(γc + 1)): expected tokens per target call over the cost of one step."""
    tokens = gamma + 1 if alpha >= 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return tokens / (gamma * c + 1)


def compute_stats(
    steps: list[StepRecord],
    n_new: int,
    seconds: float,
    options: SpecOptions,
    target_only_tokens: list[int] | None = None,
    target_only_seconds: float | None = None,
    new_tokens: list[int] | None = None,
    runs: list[tuple[float, float]] | None = None,
) -> dict:
    """α, mean accepted with / without the bonus token, per-position acceptance, speeds and speedups.

    ``runs``: (target-only seconds, speculative seconds) of alternated timed runs after a warm-up; the speedup is
    then their median ratio, with the min and max (one cold pair can be off by 10x on a loaded machine)."""
    n_steps = max(len(steps), 1)
    accepted = [len(s.accepted) for s in steps]
    tried = decided_positions(steps)
    drafted = sum(len(s.tree.tokens) for s in steps)
    depth = max((int(s.tree.depth.max()) for s in steps if len(s.tree.tokens)), default=0)
    alpha = sum(accepted) / tried if tried else 0.0
    tps = n_new / seconds if seconds > 0 else None
    stats = {
        "method": options.method,
        "accept": options.accept,
        "lossless": options.accept != "typical",
        "gamma": options.gamma if options.method in ("chain", "lookup", "mtp") else None,
        "tree": dict(depth=options.tree_depth, topk=options.tree_topk, budget=options.tree_budget)
        if options.method in ("tree", "eagle")
        else None,
        "steps": len(steps),
        "drafted": drafted,
        "depth": depth,
        "new_tokens": n_new,
        "alpha": alpha,  # Leviathan's α: accepted / decided positions (module docstring)
        "draft_acceptance_rate": sum(accepted) / drafted if drafted else 0.0,  # vLLM's: accepted / drafted tokens
        "mean_accepted_with_bonus": sum(a + 1 for a in accepted) / n_steps,
        "mean_accepted_without_bonus": sum(accepted) / n_steps,
        "per_position_acceptance": [sum(a > d for a in accepted) / n_steps for d in range(depth)],
        "acceptance_length_histogram": np.bincount(accepted, minlength=depth + 1).tolist() if steps else [],
        "per_head_acceptance": per_head_acceptance(steps),
        "seconds": seconds,
        "tokens_per_s": tps,
        "draft_seconds": sum(s.draft_seconds for s in steps),
        "verify_seconds": sum(s.verify_seconds for s in steps),
        "bookkeeping_seconds": sum(s.verify_seconds - s.forward_seconds for s in steps if s.forward_seconds),
        "target_only_tokens_per_s": None,
        "speedup": None,
        "speedup_min": None,
        "speedup_max": None,
        "runs": 0,
        "c": None,
        "theoretical_speedup": None,
        "first_divergence": None,
    }
    if target_only_tokens is not None and runs:
        ratios = [b / s for b, s in runs]
        target_only_seconds = statistics.median(b for b, _ in runs)
        tps = n_new / statistics.median(s for _, s in runs)
        stats["tokens_per_s"] = tps
        stats.update(speedup=statistics.median(ratios), speedup_min=min(ratios), speedup_max=max(ratios))
        stats["runs"] = len(runs)
        stats["target_only_tokens_per_s"] = len(target_only_tokens) / target_only_seconds
    elif target_only_tokens is not None and target_only_seconds:
        base_tps = len(target_only_tokens) / target_only_seconds
        stats["target_only_tokens_per_s"] = base_tps
        speedup = measured_speedup(n_new, seconds, len(target_only_tokens), target_only_seconds)
        stats["speedup"] = stats["speedup_min"] = stats["speedup_max"] = speedup
        stats["runs"] = 1
    if stats["target_only_tokens_per_s"]:
        target_step = 1 / stats["target_only_tokens_per_s"]
        c = stats["draft_seconds"] / max(drafted, 1) / target_step  # drafting per drafted token, in target steps
        stats["c"] = c
        stats["theoretical_speedup"] = theoretical_speedup(alpha, max(depth, 1), c)
        if options.temperature <= 0 and new_tokens is not None:
            stats["first_divergence"] = first_divergence(new_tokens, target_only_tokens)
    return stats


def per_head_acceptance(steps: list[StepRecord]) -> list[float] | None:
    """For heads on the target (nodes with a ``source``): per head k, the share of the steps whose walk reached
    head k's candidates (a decision on one of them) that accepted one. None for draft-model or lookup drafting."""
    if not steps or all(s.tree.source is None for s in steps):
        return None
    n = 1 + max((int(s.tree.source.max()) for s in steps if s.tree.source is not None and len(s.tree.source)),
                default=-1)  # fmt: skip
    reached, took = np.zeros(n), np.zeros(n)
    for s in steps:
        src = s.tree.source
        if src is None or not len(src):
            continue
        heads_tried = {int(src[d.node]) for d in s.decisions}
        for k in heads_tried:
            reached[k] += 1
        for node in s.accepted:
            took[int(src[node])] += 1
    return [float(t / r) if r else 0.0 for t, r in zip(took, reached, strict=True)]
